! seaice_constants: fixed physical constants shared by every Fortran module (not tunable).
! Tunable parameters live in the derived types of seaice_params.
module seaice_constants
  use seaice_kinds, only: dp
  implicit none
  private
  real(dp), parameter, public :: pi = 3.14159265358979323846_dp
  real(dp), parameter, public :: t_kelvin = 273.15_dp            ! K at 0 degC
  real(dp), parameter, public :: stefan_boltzmann = 5.670374419e-8_dp  ! W m-2 K-4
  real(dp), parameter, public :: deg_to_rad = pi / 180.0_dp
end module seaice_constants
