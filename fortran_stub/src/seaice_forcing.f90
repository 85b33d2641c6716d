! seaice_forcing: forcing layout, linear time interpolation and centre-to-face interpolation.
!
! Forcing arrays are f(nx, ny, nforc) at cell centres, variables in the order of the f_* indices below
! (the names of docs/design.md): uas, vas (m s-1), tas (K), huss (kg kg-1), rsds, rlds (W m-2),
! prsn (kg m-2 s-1), uo, vo (m s-1).
!
!   call interp_time(nx, ny, nf, w, f0, f1, f)        f = (1-w) f0 + w f1
!   call centre_to_u(nx, ny, c, fu)                   mean of the two cells beside each east face (fu(nx,:) = 0)
!   call centre_to_v(nx, ny, c, fv)                   mean of the two cells beside each north face (fv(:,ny) = 0)
!   call air_stress(nx, ny, rho_air, c_air, uas, vas, taux, tauy, wspd)   quadratic drag at centres (N m-2)
module seaice_forcing
  use seaice_kinds, only: dp
  implicit none
  private
  public :: interp_time, centre_to_u, centre_to_v, air_stress
  integer, parameter, public :: f_uas = 1, f_vas = 2, f_tas = 3, f_huss = 4, f_rsds = 5, f_rlds = 6, &
                                f_prsn = 7, f_uo = 8, f_vo = 9, nforc = 9

contains

  subroutine interp_time(nx, ny, nf, w, f0, f1, f)
    integer, intent(in) :: nx, ny, nf
    real(dp), intent(in) :: w, f0(nx, ny, nf), f1(nx, ny, nf)
    real(dp), intent(out) :: f(nx, ny, nf)
    f = (1.0_dp - w) * f0 + w * f1
  end subroutine interp_time

  subroutine centre_to_u(nx, ny, c, fu)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: c(nx, ny)
    real(dp), intent(out) :: fu(nx, ny)
    integer :: i, j
    do j = 1, ny
       do i = 1, nx - 1
          fu(i, j) = 0.5_dp * (c(i, j) + c(i + 1, j))
       end do
       fu(nx, j) = 0.0_dp
    end do
  end subroutine centre_to_u

  subroutine centre_to_v(nx, ny, c, fv)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: c(nx, ny)
    real(dp), intent(out) :: fv(nx, ny)
    integer :: i, j
    do j = 1, ny - 1
       do i = 1, nx
          fv(i, j) = 0.5_dp * (c(i, j) + c(i, j + 1))
       end do
    end do
    fv(:, ny) = 0.0_dp
  end subroutine centre_to_v

  subroutine air_stress(nx, ny, rho_air, c_air, uas, vas, taux, tauy, wspd)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: rho_air, c_air, uas(nx, ny), vas(nx, ny)
    real(dp), intent(out) :: taux(nx, ny), tauy(nx, ny), wspd(nx, ny)
    integer :: i, j
    do j = 1, ny
       do i = 1, nx
          wspd(i, j) = sqrt(uas(i, j)**2 + vas(i, j)**2)
          taux(i, j) = rho_air * c_air * wspd(i, j) * uas(i, j)
          tauy(i, j) = rho_air * c_air * wspd(i, j) * vas(i, j)
       end do
    end do
  end subroutine air_stress

end module seaice_forcing
