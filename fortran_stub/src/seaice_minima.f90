! seaice_minima: mechanical redistribution cap and ice minima (physics.md §1.5).
!
!   call ridge_cap(nx, ny, a)                 A <- min(A, 1); V is left unchanged, so ridging thickens the ice
!   call apply_minima(nx, ny, h_min, h_max, a_min, a, vice, vsnow, v_removed [, ocean])
!       removes all ice and snow of a cell where A < a_min or h = V/A < h_min (also A, V <= 0);
!       raises A to min(1, V/h_max) where h > h_max (volume kept: area and volume are transported apart, and a
!       trace of area must not end up holding metres of ice);
!       v_removed(nx,ny) out: ice volume removed (m), so a caller can return its latent heat to the ocean
!       ocean(nx,ny) optional: 1 ocean, 0 land; land cells hold no ice (a = vice = vsnow = 0, nothing reported
!       as removed: no ice reaches land through closed faces, so there is nothing to melt there)
module seaice_minima
  use seaice_kinds, only: dp
  implicit none
  private
  public :: ridge_cap, apply_minima

contains

  subroutine ridge_cap(nx, ny, a)
    integer, intent(in) :: nx, ny
    real(dp), intent(inout) :: a(nx, ny)
    integer :: i, j
    do j = 1, ny
       do i = 1, nx
          a(i, j) = min(a(i, j), 1.0_dp)
       end do
    end do
  end subroutine ridge_cap

  subroutine apply_minima(nx, ny, h_min, h_max, a_min, a, vice, vsnow, v_removed, ocean)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: h_min, h_max, a_min
    real(dp), intent(inout) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny)
    real(dp), intent(out) :: v_removed(nx, ny)
    real(dp), intent(in), optional :: ocean(nx, ny)
    integer :: i, j
    do j = 1, ny
       do i = 1, nx
          v_removed(i, j) = 0.0_dp
          if (a(i, j) < a_min .or. a(i, j) <= 0.0_dp .or. vice(i, j) < h_min * a(i, j) &
              .or. vice(i, j) <= 0.0_dp) then
             v_removed(i, j) = vice(i, j)
             a(i, j) = 0.0_dp
             vice(i, j) = 0.0_dp
             vsnow(i, j) = 0.0_dp
          else if (vice(i, j) > h_max * a(i, j)) then
             a(i, j) = min(1.0_dp, vice(i, j) / h_max)
          end if
          if (vsnow(i, j) < 0.0_dp) vsnow(i, j) = 0.0_dp
       end do
    end do
    if (present(ocean)) then
       where (ocean <= 0.5_dp)
          a = 0.0_dp
          vice = 0.0_dp
          vsnow = 0.0_dp
          v_removed = 0.0_dp
       end where
    end if
  end subroutine apply_minima

end module seaice_minima
