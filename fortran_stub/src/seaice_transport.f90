! seaice_transport: conservative finite-volume transport of cell-centred tracers on the closed C-grid.
!
!   call advect(nx, ny, dx, dt, u, v, q, nq, limiter, cfl_max, xfirst, nsub, ierr [, ocean])
!     nx, ny   cells; dx cell size (m); dt time to advance (s)
!     u(nx,ny) x-velocity on east faces (m s-1); u(nx,:) is the east wall and is ignored (treated as 0)
!     v(nx,ny) y-velocity on north faces (m s-1); v(:,ny) is the north wall and is ignored (treated as 0)
!     q(nx,ny,nq) inout: nq extensive tracers per unit area (A, V, Vs, A*damage, stresses ...)
!     limiter  0 donor cell, 1 minmod, 2 van Leer, 3 MC (monotonized central)
!     cfl_max  largest Courant number |u| dt_sub/dx per substep (<= 0.5 keeps the scheme positive)
!     xfirst   .true.: x sweep then y sweep in the first substep; the order alternates between substeps
!     nsub     out: number of substeps used; ierr out: 0 ok, 6 non-finite/too many substeps, 2 bad argument
!     ocean    optional (nx,ny): 1 ocean, 0 land. Faces touching land are closed like the walls: no flux through
!              them (whatever the velocity there) and zero slope in the cells next to them; land cells are untouched
!
! Scheme: dimensionally split MUSCL in flux form. Face value = upwind cell value + (1-|c|)/2 x limited slope, so
! the flux form conserves sum(q) dx^2 to round-off in the closed box, and with cfl_max <= 0.5 each sweep is
! positive (a cell never exports more than it holds) and, for the TVD limiters, creates no new extrema in 1-D.
! Slopes of the cells next to a wall are zero (zero-gradient ghost).
module seaice_transport
  use seaice_kinds, only: dp
  use seaice_grid, only: land_geometry
  implicit none
  private
  public :: advect, limited_slope

  integer, parameter, public :: lim_upwind = 0, lim_minmod = 1, lim_vanleer = 2, lim_mc = 3
  integer, parameter :: max_substeps = 100000

contains

  subroutine advect(nx, ny, dx, dt, u, v, q, nq, limiter, cfl_max, xfirst, nsub, ierr, ocean)
    integer, intent(in) :: nx, ny, nq, limiter
    real(dp), intent(in) :: dx, dt, cfl_max
    real(dp), intent(in) :: u(nx, ny), v(nx, ny)
    real(dp), intent(inout) :: q(nx, ny, nq)
    logical, intent(in) :: xfirst
    integer, intent(out) :: nsub, ierr
    real(dp), intent(in), optional :: ocean(nx, ny)
    real(dp), allocatable :: slope(:, :), flux(:, :), ou(:, :), ov(:, :), sx(:, :), sy(:, :)
    integer, allocatable :: nocean(:, :), coast(:, :)
    real(dp) :: cmax, dts
    integer :: n, k, stat, ncoast
    logical :: x_now, land

    nsub = 0
    ierr = 0
    if (nx < 2 .or. ny < 2 .or. nq < 1 .or. dx <= 0.0_dp .or. dt < 0.0_dp .or. &
        limiter < lim_upwind .or. limiter > lim_mc .or. .not. (cfl_max > 0.0_dp .and. cfl_max <= 1.0_dp)) then
       ierr = 2
       return
    end if
    cmax = max(maxval(abs(u(1:nx-1, :))), maxval(abs(v(:, 1:ny-1)))) * dt / dx
    if (.not. (cmax <= real(max_substeps, dp) * cfl_max)) then   ! also catches NaN
       ierr = 6
       return
    end if
    nsub = max(1, ceiling(cmax / cfl_max))
    dts = dt / nsub
    allocate(slope(nx, ny), flux(nx + 1, ny + 1), stat=stat)
    if (stat /= 0) then
       ierr = 5
       return
    end if
    land = .false.
    if (present(ocean)) land = any(ocean <= 0.5_dp)
    if (land) then
       ! open faces, and the cells whose slope is kept (both faces along the sweep open, as away from the walls)
       allocate(ou(nx, ny), ov(nx, ny), sx(nx, ny), sy(nx, ny), nocean(0:nx, 0:ny))
       call land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
       sx = ou
       sx(2:nx, :) = sx(2:nx, :) * ou(1:nx-1, :)
       sx(1, :) = 0.0_dp
       sy = ov
       sy(:, 2:ny) = sy(:, 2:ny) * ov(:, 1:ny-1)
       sy(:, 1) = 0.0_dp
    end if
    x_now = xfirst
    do n = 1, nsub
       do k = 1, nq
          if (land) then
             if (x_now) then
                call sweep_x(nx, ny, dts / dx, u, q(:, :, k), limiter, slope, flux, ou, sx)
                call sweep_y(nx, ny, dts / dx, v, q(:, :, k), limiter, slope, flux, ov, sy)
             else
                call sweep_y(nx, ny, dts / dx, v, q(:, :, k), limiter, slope, flux, ov, sy)
                call sweep_x(nx, ny, dts / dx, u, q(:, :, k), limiter, slope, flux, ou, sx)
             end if
          else if (x_now) then
             call sweep_x(nx, ny, dts / dx, u, q(:, :, k), limiter, slope, flux)
             call sweep_y(nx, ny, dts / dx, v, q(:, :, k), limiter, slope, flux)
          else
             call sweep_y(nx, ny, dts / dx, v, q(:, :, k), limiter, slope, flux)
             call sweep_x(nx, ny, dts / dx, u, q(:, :, k), limiter, slope, flux)
          end if
       end do
       x_now = .not. x_now
    end do
  end subroutine advect

  ! Limited slope (difference per cell) from the backward and forward differences a, b.
  pure elemental function limited_slope(a, b, limiter) result(s)
    real(dp), intent(in) :: a, b
    integer, intent(in) :: limiter
    real(dp) :: s
    s = 0.0_dp
    if (a * b <= 0.0_dp) return
    select case (limiter)
    case (lim_minmod)
       s = sign(min(abs(a), abs(b)), a)
    case (lim_vanleer)
       s = 2.0_dp * a * b / (a + b)
    case (lim_mc)
       s = sign(min(2.0_dp * abs(a), 2.0_dp * abs(b), 0.5_dp * abs(a + b)), a)
    end select
  end function limited_slope

  ! One x sweep: q <- q - r (F_e - F_w), r = dt/dx. flux(i, j) holds the flux through the east face of cell i.
  ! With land: face_open(nx,ny) 1 on open east faces (else no flux), keep(nx,ny) 1 where the cell keeps its slope.
  subroutine sweep_x(nx, ny, r, u, q, limiter, slope, flux, face_open, keep)
    integer, intent(in) :: nx, ny, limiter
    real(dp), intent(in) :: r, u(nx, ny)
    real(dp), intent(inout) :: q(nx, ny), slope(nx, ny), flux(0:nx, ny + 1)
    real(dp), intent(in), optional :: face_open(nx, ny), keep(nx, ny)
    integer :: i, j
    real(dp) :: uf
    do j = 1, ny
       slope(1, j) = 0.0_dp
       slope(nx, j) = 0.0_dp
       if (limiter /= lim_upwind) then
          do i = 2, nx - 1
             slope(i, j) = limited_slope(q(i, j) - q(i - 1, j), q(i + 1, j) - q(i, j), limiter)
          end do
       else
          slope(2:nx-1, j) = 0.0_dp
       end if
       if (present(keep)) slope(:, j) = slope(:, j) * keep(:, j)
       flux(0, j) = 0.0_dp
       flux(nx, j) = 0.0_dp
       do i = 1, nx - 1
          uf = u(i, j)
          if (uf >= 0.0_dp) then
             flux(i, j) = uf * (q(i, j) + 0.5_dp * (1.0_dp - uf * r) * slope(i, j))
          else
             flux(i, j) = uf * (q(i + 1, j) - 0.5_dp * (1.0_dp + uf * r) * slope(i + 1, j))
          end if
       end do
       if (present(face_open)) flux(1:nx-1, j) = flux(1:nx-1, j) * face_open(1:nx-1, j)
       do i = 1, nx
          q(i, j) = q(i, j) - r * (flux(i, j) - flux(i - 1, j))
       end do
    end do
  end subroutine sweep_x

  ! One y sweep; flux(i, j+1) holds the flux through the north face of cell (i, j). Loops keep i fastest.
  subroutine sweep_y(nx, ny, r, v, q, limiter, slope, flux, face_open, keep)
    integer, intent(in) :: nx, ny, limiter
    real(dp), intent(in) :: r, v(nx, ny)
    real(dp), intent(inout) :: q(nx, ny), slope(nx, ny), flux(nx + 1, 0:ny)
    real(dp), intent(in), optional :: face_open(nx, ny), keep(nx, ny)
    integer :: i, j
    real(dp) :: vf
    slope(:, 1) = 0.0_dp
    slope(:, ny) = 0.0_dp
    do j = 2, ny - 1
       if (limiter /= lim_upwind) then
          do i = 1, nx
             slope(i, j) = limited_slope(q(i, j) - q(i, j - 1), q(i, j + 1) - q(i, j), limiter)
          end do
       else
          slope(:, j) = 0.0_dp
       end if
    end do
    if (present(keep)) slope = slope * keep
    flux(:, 0) = 0.0_dp
    flux(:, ny) = 0.0_dp
    do j = 1, ny - 1
       do i = 1, nx
          vf = v(i, j)
          if (vf >= 0.0_dp) then
             flux(i, j) = vf * (q(i, j) + 0.5_dp * (1.0_dp - vf * r) * slope(i, j))
          else
             flux(i, j) = vf * (q(i, j + 1) - 0.5_dp * (1.0_dp + vf * r) * slope(i, j + 1))
          end if
       end do
    end do
    if (present(face_open)) flux(1:nx, 1:ny-1) = flux(1:nx, 1:ny-1) * face_open(:, 1:ny-1)
    do j = 1, ny
       do i = 1, nx
          q(i, j) = q(i, j) - r * (flux(i, j) - flux(i, j - 1))
       end do
    end do
  end subroutine sweep_y

end module seaice_transport
