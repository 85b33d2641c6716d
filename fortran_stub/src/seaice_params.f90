module seaice_params
  use seaice_kinds, only: dp
  implicit none
  type, public :: dyn_params
     real(dp) :: rho_ice = 900.0_dp
     integer :: n_evp = 200
     logical :: thermo_on = .true.
  end type dyn_params
end module seaice_params
