module seaice_api
  use seaice_kinds, only: dp
  use seaice_params, only: dyn_params
  implicit none
contains
  subroutine scale_field(p, a, nx, ny, ierr)
    type(dyn_params), intent(in) :: p
    integer, intent(in) :: nx, ny
    real(dp), intent(inout) :: a(nx, ny)
    integer, intent(out) :: ierr
    a = a * p%rho_ice
    ierr = 0
  end subroutine scale_field
end module seaice_api
