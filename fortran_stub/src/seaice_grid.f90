! seaice_grid: land on the closed C-grid (docs/physics-land.md). Shared by the coarse mEVP and the BBM truth.
!
! ocean(nx,ny): 1 = ocean, 0 = land (cell centres; anything > 0.5 counts as ocean). Land is treated like the walls:
! * a face is open only if both cells it separates are ocean (CICE epm/npm = min of the two T masks); closed faces
!   carry u = 0 (v = 0) and no transport flux. The east-wall u(nx,:) and north-wall v(:,ny) are closed too.
! * a corner is an ocean corner only if all four cells around it are ocean (CICE uvm, SI3 F-point mask). A corner
!   with some land around it is a coastal corner: its velocity is zero (no slip), so the shear strain there is the
!   one-sided difference with a mirrored ghost velocity, as at the walls (`noslip_shear`). A corner with no ocean
!   cell around it carries no stress.
!
!   call land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
!     ou, ov (nx,ny) out: 1 on open east (u) / north (v) faces, else 0
!     nocean(0:nx,0:ny) out: number of ocean cells around each corner (in-domain cells only)
!     ncoast out, coast(2, ncoast) out (allocated here): (i, j) of every corner with an in-domain land neighbour
!   noslip_shear(us, un, os, on, vw, ve, ow, oe) -> du/dy + dv/dx times dx at a corner (m s-1), from the u faces
!     south/north of it and the v faces west/east of it (values 0 on closed faces) and their open flags os..oe
!   coastal_shear(nx, ny, rdx, uh, vh, ouh, ovh, ncoast, coast, ds): ds (0:nx,0:ny) at the listed corners <-
!     noslip_shear * rdx, from halo face arrays uh(0:nx,0:ny+1), vh(0:nx+1,0:ny) and their open flags (0 outside)
!   face_coriolis(nx, ny, fcor, fu, fv): f at the faces as the mean of the two neighbouring T values (s-1); a
!     constant field stays bit-identical (f + f = 2f and 0.5 (2f) = f are exact)
module seaice_grid
  use seaice_kinds, only: dp
  implicit none
  private
  public :: land_geometry, noslip_shear, coastal_shear, face_coriolis, count_ocean

contains

  subroutine land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: ocean(nx, ny)
    real(dp), intent(out) :: ou(nx, ny), ov(nx, ny)
    integer, intent(out) :: nocean(0:nx, 0:ny), ncoast
    integer, allocatable, intent(out) :: coast(:, :)
    integer :: i, j, nin, k
    logical :: oc(0:nx + 1, 0:ny + 1), inside(0:nx + 1, 0:ny + 1)

    oc = .false.
    inside = .false.
    oc(1:nx, 1:ny) = ocean > 0.5_dp
    inside(1:nx, 1:ny) = .true.
    ou = 0.0_dp
    ov = 0.0_dp
    do j = 1, ny
       do i = 1, nx - 1
          if (oc(i, j) .and. oc(i + 1, j)) ou(i, j) = 1.0_dp
       end do
    end do
    do j = 1, ny - 1
       do i = 1, nx
          if (oc(i, j) .and. oc(i, j + 1)) ov(i, j) = 1.0_dp
       end do
    end do
    ncoast = 0
    do j = 0, ny
       do i = 0, nx
          nocean(i, j) = count(oc(i:i + 1, j:j + 1))
          nin = count(inside(i:i + 1, j:j + 1))
          if (nocean(i, j) < nin) ncoast = ncoast + 1
       end do
    end do
    allocate(coast(2, ncoast))
    k = 0
    do j = 0, ny
       do i = 0, nx
          if (nocean(i, j) < count(inside(i:i + 1, j:j + 1))) then
             k = k + 1
             coast(1, k) = i
             coast(2, k) = j
          end if
       end do
    end do
  end subroutine land_geometry

  ! Shear du/dy + dv/dx (times dx) at a corner with zero velocity at the corner itself (no slip): a closed face next
  ! to an open one takes the mirrored (negated) value of the open one, two closed faces give 0. With all four faces
  ! open this is the centred difference (un - us) + (ve - vw).
  pure function noslip_shear(us, un, os, on, vw, ve, ow, oe) result(s)
    real(dp), intent(in) :: us, un, os, on, vw, ve, ow, oe
    real(dp) :: s
    s = (un - us - (1.0_dp - on) * us + (1.0_dp - os) * un) + (ve - vw - (1.0_dp - oe) * vw + (1.0_dp - ow) * ve)
  end function noslip_shear

  subroutine coastal_shear(nx, ny, rdx, uh, vh, ouh, ovh, ncoast, coast, ds)
    integer, intent(in) :: nx, ny, ncoast, coast(2, ncoast)
    real(dp), intent(in) :: rdx, uh(0:nx, 0:ny + 1), vh(0:nx + 1, 0:ny), ouh(0:nx, 0:ny + 1), ovh(0:nx + 1, 0:ny)
    real(dp), intent(inout) :: ds(0:nx, 0:ny)
    integer :: c, i, j
    do c = 1, ncoast
       i = coast(1, c)
       j = coast(2, c)
       ds(i, j) = noslip_shear(uh(i, j) * ouh(i, j), uh(i, j + 1) * ouh(i, j + 1), ouh(i, j), ouh(i, j + 1), &
                               vh(i, j) * ovh(i, j), vh(i + 1, j) * ovh(i + 1, j), ovh(i, j), ovh(i + 1, j)) * rdx
    end do
  end subroutine coastal_shear

  subroutine face_coriolis(nx, ny, fcor, fu, fv)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: fcor(nx, ny)
    real(dp), intent(out) :: fu(nx, ny), fv(nx, ny)
    integer :: i, j
    fu = 0.0_dp
    fv = 0.0_dp
    do j = 1, ny
       do i = 1, nx - 1
          fu(i, j) = 0.5_dp * (fcor(i, j) + fcor(i + 1, j))
       end do
    end do
    do j = 1, ny - 1
       do i = 1, nx
          fv(i, j) = 0.5_dp * (fcor(i, j) + fcor(i, j + 1))
       end do
    end do
  end subroutine face_coriolis

  ! number of ocean cells (for domain means over the ocean); at least 1
  integer function count_ocean(nx, ny, ocean) result(n)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: ocean(nx, ny)
    n = max(1, count(ocean > 0.5_dp))
  end function count_ocean

end module seaice_grid
