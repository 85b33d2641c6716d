! Brittle Bingham-Maxwell (BBM) dynamics on the Arakawa C-grid (physics.md §2.2; Olason et al. 2022).
!
! Layout (docs/design.md): u(i,j) on the east face of cell (i,j), u(nx,:) = 0 (east wall), west wall implicit;
! v(i,j) on the north face, v(:,ny) = 0; s11, s22 and damage at cell centres (T); s12 at cell corners (Z),
! stored here as s12(0:nx, 0:ny) so that the wall corners (no-slip) carry their own elastic stress memory;
! s12(i,j) with i,j >= 1 is the north-east corner of cell (i,j).
! Stresses are vertically integrated (N m-1). Damage d: 1 = undamaged, -> 0 fully damaged.
!
! One call advances the momentum and the stresses over one advective step dt with nsub explicit elastic
! substeps and returns the substep-mean face velocities used for transport.
!
! Land (seaice_grid, docs/physics-land.md): ocean(nx,ny) 1 ocean / 0 land. Faces touching land carry no mass and
! stay at rest, like the walls; at coastal corners (some land around) the shear strain is the no-slip one-sided
! difference and the corner stiffness/relaxation are averaged over the ocean cells only; corners without ocean
! carry no stress. fcor(nx,ny): Coriolis parameter at the centres (s-1), averaged to the faces.
module seaice_bbm
  use seaice_kinds, only: dp
  use seaice_truth_params, only: truth_params
  use seaice_constants, only: deg_to_rad
  use seaice_grid, only: land_geometry, noslip_shear, face_coriolis
  implicit none
  private
  public :: bbm_pwave_speed, bbm_substep_count, bbm_dynamics, bbm_heal, bbm_new_ice_undamaged
  public :: corner_to_centre, add_centre_to_corner

contains

  !> P-wave speed (m s-1) of undamaged compact ice, which bounds the explicit elastic substep.
  pure function bbm_pwave_speed(p) result(c)
    type(truth_params), intent(in) :: p
    real(dp) :: c
    c = sqrt(p%young / p%e_reduction / (p%rho_ice * (1.0_dp - p%poisson**2)))
  end function bbm_pwave_speed

  !> Number of elastic substeps for an advective step dt (s) on cells of size dx (m).
  pure function bbm_substep_count(p, dx, dt) result(n)
    type(truth_params), intent(in) :: p
    real(dp), intent(in) :: dx, dt
    integer :: n
    n = max(1, ceiling(dt / (p%cfl_elastic * dx / bbm_pwave_speed(p)) - 1.0e-9_dp))
  end function bbm_substep_count

  !> Copy the edge values of a T field padded to (0:nx+1, 0:ny+1) into its ghost ring (zero gradient), so that
  !> a four-cell average at a wall corner is the mean of the cells that exist.
  pure subroutine fill_ghosts(nx, ny, f)
    integer, intent(in) :: nx, ny
    real(dp), intent(inout) :: f(0:nx+1, 0:ny+1)
    f(0, 1:ny) = f(1, 1:ny)
    f(nx+1, 1:ny) = f(nx, 1:ny)
    f(:, 0) = f(:, 1)
    f(:, ny+1) = f(:, ny)
  end subroutine fill_ghosts

  !> Advance velocities and stresses by dt (s) with nsub substeps (physics.md §2.2).
  !> a (1), vol, vsn (m), coh (Pa, depth-averaged cohesion incl. the scale factor and random field),
  !> uas, vas (m s-1 wind at T), uo, vo (m s-1 ocean current at T) are held fixed over the call.
  subroutine bbm_dynamics(p, nx, ny, dx, dt, nsub, a, vol, vsn, coh, uas, vas, uo, vo, ocean, fcor, &
                          u, v, s11, s22, s12, dmg, ubar, vbar)
    type(truth_params), intent(in) :: p
    integer, intent(in) :: nx, ny, nsub
    real(dp), intent(in) :: dx, dt
    real(dp), intent(in) :: a(nx, ny), vol(nx, ny), vsn(nx, ny), coh(nx, ny)
    real(dp), intent(in) :: uas(nx, ny), vas(nx, ny), uo(nx, ny), vo(nx, ny), ocean(nx, ny), fcor(nx, ny)
    real(dp), intent(inout) :: u(nx, ny), v(nx, ny), s11(nx, ny), s22(nx, ny), s12(0:nx, 0:ny), dmg(nx, ny)
    real(dp), intent(out) :: ubar(nx, ny), vbar(nx, ny)

    ! per-call (fixed) fields
    real(dp), allocatable :: kel0(:,:), pmax(:,:), cint(:,:), nint_(:,:), td0(:,:), lam0(:,:)
    real(dp), allocatable :: mu(:,:), mv(:,:), au(:,:), av(:,:), tax(:,:), tay(:,:)
    real(dp), allocatable :: uwu(:,:), vwu(:,:), uwv(:,:), vwv(:,:)
    ! per-substep work
    real(dp), allocatable :: e11(:,:), e22(:,:), kd(:,:), mult(:,:), fac(:,:), pu(:,:), pv(:,:)
    real(dp), allocatable :: ca(:,:), cb(:,:), cva(:,:), cvb(:,:)
    ! land: open faces (also with the halo layout), ocean flags with a ghost ring of 0, Coriolis at the faces,
    ! 1/number of ocean cells at the coastal corners
    real(dp), allocatable :: ou(:,:), ov(:,:), ouh(:,:), ovh(:,:), ocp(:,:), fu(:,:), fv(:,:), rz(:,:)
    integer, allocatable :: nocean(:,:), coast(:,:)
    logical, allocatable :: coastz(:,:)
    integer :: ncoast, c
    real(dp) :: dts, nu, e, expc, tau_c, d, lam, sn, ptil, kdd, e12, s12t, tau, dcrit, td, f
    real(dp) :: fx, fy, uw_rel, vw_rel, cw, cth, sth, rhs, inv_dx, pvb, pub, vb, ub, m, am
    integer :: i, j, k, ia
    logical :: int_alpha

    dts = dt / nsub
    nu = p%poisson
    e = p%young / p%e_reduction
    inv_dx = 1.0_dp / dx
    cth = cos(p%turning_angle * deg_to_rad)
    sth = sin(p%turning_angle * deg_to_rad)
    ia = nint(p%alpha - 1.0_dp)
    int_alpha = abs(p%alpha - 1.0_dp - ia) < 1.0e-12_dp

    allocate(kel0(nx, ny), pmax(nx, ny), cint(nx, ny), nint_(nx, ny), td0(nx, ny), lam0(nx, ny))
    allocate(mu(nx, ny), mv(nx, ny), au(nx, ny), av(nx, ny), tax(nx, ny), tay(nx, ny))
    allocate(uwu(nx, ny), vwu(nx, ny), uwv(nx, ny), vwv(nx, ny))
    allocate(e11(nx, ny), e22(nx, ny), pu(nx, ny), pv(nx, ny), ca(nx, ny), cb(nx, ny), cva(nx, ny), cvb(nx, ny))
    allocate(kd(0:nx+1, 0:ny+1), mult(0:nx+1, 0:ny+1), fac(0:nx+1, 0:ny+1))
    allocate(ou(nx, ny), ov(nx, ny), ouh(0:nx, 0:ny+1), ovh(0:nx+1, 0:ny), ocp(0:nx+1, 0:ny+1), fu(nx, ny), &
             fv(nx, ny), rz(0:nx, 0:ny), nocean(0:nx, 0:ny), coastz(0:nx, 0:ny))
    call face_coriolis(nx, ny, fcor, fu, fv)
    call land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
    ouh = 0.0_dp
    ovh = 0.0_dp
    ouh(1:nx-1, 1:ny) = ou(1:nx-1, :)
    ovh(1:nx, 1:ny-1) = ov(:, 1:ny-1)
    ocp = 0.0_dp
    ocp(1:nx, 1:ny) = merge(1.0_dp, 0.0_dp, ocean > 0.5_dp)
    coastz = .false.
    rz = 0.0_dp
    do c = 1, ncoast
      coastz(coast(1, c), coast(2, c)) = .true.
      if (nocean(coast(1, c), coast(2, c)) > 0) then
        rz(coast(1, c), coast(2, c)) = 1.0_dp / nocean(coast(1, c), coast(2, c))
      else
        s12(coast(1, c), coast(2, c)) = 0.0_dp   ! no ocean around: no stress
      end if
    end do

    ! --- fields that stay fixed during the substeps (A, V, Vs and forcing are frozen over dt)
    do j = 1, ny
      do i = 1, nx
        expc = exp(-p%compaction * (1.0_dp - a(i, j)))
        kel0(i, j) = dts * e * vol(i, j) * expc / (1.0_dp - nu * nu)   ! times d gives dts*E_eff*V/(1-nu^2)
        pmax(i, j) = p%p0 * vol(i, j)**p%p_exp * expc
        cint(i, j) = coh(i, j) * vol(i, j)
        nint_(i, j) = p%n_max * p%scale_coef * vol(i, j)
        td0(i, j) = dx * sqrt(2.0_dp * (1.0_dp + nu) * p%rho_ice / (e * expc))  ! damage time t_d (s)
        lam0(i, j) = p%lambda0 * expc**(p%alpha - 1.0_dp)
      end do
    end do
    ! face quantities: mass (kg m-2), concentration, air stress A*tau_a (N m-2), ocean current (m s-1)
    do j = 1, ny
      do i = 1, nx
        if (i < nx) then
          m = 0.5_dp * (p%rho_ice * (vol(i, j) + vol(i+1, j)) + p%rho_snow * (vsn(i, j) + vsn(i+1, j)))
          am = 0.5_dp * (a(i, j) + a(i+1, j))
          if (0.5_dp * (vol(i, j) + vol(i+1, j)) < p%h_min_dyn .or. am <= 0.0_dp .or. ou(i, j) < 0.5_dp) then
            m = 0.0_dp
          end if
          mu(i, j) = m
          au(i, j) = am
          ! air stress at the centres, then averaged to the face (as the coarse model does)
          tax(i, j) = am * 0.5_dp * p%rho_air * p%air_drag * (sqrt(uas(i, j)**2 + vas(i, j)**2) * uas(i, j) &
                                                             + sqrt(uas(i+1, j)**2 + vas(i+1, j)**2) * uas(i+1, j))
          uwu(i, j) = 0.5_dp * (uo(i, j) + uo(i+1, j))
          vwu(i, j) = 0.5_dp * (vo(i, j) + vo(i+1, j))
        else
          mu(i, j) = 0.0_dp; au(i, j) = 0.0_dp; tax(i, j) = 0.0_dp; uwu(i, j) = 0.0_dp; vwu(i, j) = 0.0_dp
        end if
        if (j < ny) then
          m = 0.5_dp * (p%rho_ice * (vol(i, j) + vol(i, j+1)) + p%rho_snow * (vsn(i, j) + vsn(i, j+1)))
          am = 0.5_dp * (a(i, j) + a(i, j+1))
          if (0.5_dp * (vol(i, j) + vol(i, j+1)) < p%h_min_dyn .or. am <= 0.0_dp .or. ov(i, j) < 0.5_dp) then
            m = 0.0_dp
          end if
          mv(i, j) = m
          av(i, j) = am
          tay(i, j) = am * 0.5_dp * p%rho_air * p%air_drag * (sqrt(uas(i, j)**2 + vas(i, j)**2) * vas(i, j) &
                                                             + sqrt(uas(i, j+1)**2 + vas(i, j+1)**2) * vas(i, j+1))
          uwv(i, j) = 0.5_dp * (uo(i, j) + uo(i, j+1))
          vwv(i, j) = 0.5_dp * (vo(i, j) + vo(i, j+1))
        else
          mv(i, j) = 0.0_dp; av(i, j) = 0.0_dp; tay(i, j) = 0.0_dp; uwv(i, j) = 0.0_dp; vwv(i, j) = 0.0_dp
        end if
      end do
    end do
    where (mu <= 0.0_dp) u = 0.0_dp
    where (mv <= 0.0_dp) v = 0.0_dp

    ubar = 0.0_dp
    vbar = 0.0_dp
    do k = 1, nsub
      ! --- 1. strain rates at T and elastic-viscous stress predictor (Eqs. 9, 12, 25, 33)
      do j = 1, ny
        do i = 1, nx
          if (i > 1) then
            e11(i, j) = (u(i, j) - u(i-1, j)) * inv_dx
          else
            e11(i, j) = u(i, j) * inv_dx
          end if
          if (j > 1) then
            e22(i, j) = (v(i, j) - v(i, j-1)) * inv_dx
          else
            e22(i, j) = v(i, j) * inv_dx
          end if
          d = dmg(i, j)
          if (int_alpha) then
            lam = lam0(i, j) * d**ia
          else
            lam = lam0(i, j) * d**(p%alpha - 1.0_dp)
          end if
          sn = 0.5_dp * (s11(i, j) + s22(i, j))
          if (sn < 0.0_dp) then
            ptil = min(1.0_dp, -pmax(i, j) / sn)
          else
            ptil = 0.0_dp
          end if
          mult(i, j) = lam / (lam + (1.0_dp - ptil) * dts)
          kdd = kel0(i, j) * d
          kd(i, j) = kdd
          s11(i, j) = (s11(i, j) + kdd * (e11(i, j) + nu * e22(i, j))) * mult(i, j)
          s22(i, j) = (s22(i, j) + kdd * (nu * e11(i, j) + e22(i, j))) * mult(i, j)
        end do
      end do
      call fill_ghosts(nx, ny, kd)
      call fill_ghosts(nx, ny, mult)
      ! shear at the corners, with no-slip ghost velocities at the walls
      do j = 0, ny
        do i = 0, nx
          if (coastz(i, j)) then
            ! coastal corner: no slip, averages over the ocean cells (rz = 0 without any: s12 stays 0)
            e12 = 0.5_dp * inv_dx * noslip_shear(uu(i, j) * ouh(i, j), uu(i, j + 1) * ouh(i, j + 1), ouh(i, j), &
                                                 ouh(i, j + 1), vv(i, j) * ovh(i, j), vv(i + 1, j) * ovh(i + 1, j), &
                                                 ovh(i, j), ovh(i + 1, j))
            kdd = (kd(i, j) * ocp(i, j) + kd(i+1, j) * ocp(i+1, j) + kd(i, j+1) * ocp(i, j+1) &
                   + kd(i+1, j+1) * ocp(i+1, j+1)) * rz(i, j)
            f = (mult(i, j) * ocp(i, j) + mult(i+1, j) * ocp(i+1, j) + mult(i, j+1) * ocp(i, j+1) &
                 + mult(i+1, j+1) * ocp(i+1, j+1)) * rz(i, j)
          else
            e12 = 0.5_dp * inv_dx * (uat(i, j + 1) - uat(i, j) + vat(i + 1, j) - vat(i, j))
            kdd = 0.25_dp * (kd(i, j) + kd(i+1, j) + kd(i, j+1) + kd(i+1, j+1))
            f = 0.25_dp * (mult(i, j) + mult(i+1, j) + mult(i, j+1) + mult(i+1, j+1))
          end if
          s12(i, j) = (s12(i, j) + kdd * (1.0_dp - nu) * e12) * f
        end do
      end do

      ! --- 2. Mohr-Coulomb test, damage growth and stress relaxation over t_d (Eqs. 22, 29, 30)
      do j = 1, ny
        do i = 1, nx
          s12t = 0.25_dp * (s12(i-1, j-1) + s12(i, j-1) + s12(i-1, j) + s12(i, j))
          sn = 0.5_dp * (s11(i, j) + s22(i, j))
          tau = sqrt(0.25_dp * (s11(i, j) - s22(i, j))**2 + s12t * s12t)
          tau_c = tau + p%friction * sn
          dcrit = 1.0_dp
          if (tau_c > 0.0_dp) then
            if (tau_c > cint(i, j)) dcrit = cint(i, j) / tau_c
          end if
          if (sn < -nint_(i, j)) dcrit = min(dcrit, -nint_(i, j) / sn)
          d = dmg(i, j)
          if (dcrit < 1.0_dp) then
            ! t_d from the undamaged (compaction-weakened) modulus, not E*d as nextsimDG: with t_d ~ d**-0.5
            ! the relaxation stalls in nearly fully damaged ice and the stress stays frozen up to ~8x outside
            ! the Mohr-Coulomb envelope on this grid; with the undamaged crossing time it stays within ~0.6 c
            td = td0(i, j)
            f = (1.0_dp - dcrit) * dts / td
            dmg(i, j) = max(p%d_min, d - d * f)
            s11(i, j) = s11(i, j) - s11(i, j) * f
            s22(i, j) = s22(i, j) - s22(i, j) * f
            fac(i, j) = f
          else
            fac(i, j) = 0.0_dp
          end if
        end do
      end do
      call fill_ghosts(nx, ny, fac)
      do j = 0, ny
        do i = 0, nx
          ! a corner relaxes as fast as its fastest-failing cell: with the 4-cell mean, shear stress stayed
          ! frozen far outside the envelope next to intact cells (C-grid uniaxial test)
          f = max(fac(i, j), fac(i+1, j), fac(i, j+1), fac(i+1, j+1))
          s12(i, j) = s12(i, j) - s12(i, j) * f
        end do
      end do

      ! --- 3. momentum, semi-implicit in water drag and Coriolis (BrittleCGDynamicsKernel)
      ! explicit predictors p = u + dts*(div(sigma) + A tau_a + c'R(theta)U_w + tilt)/m, then a 2x2 solve per
      ! face with the partner component's predictor interpolated from the four neighbouring faces.
      do j = 1, ny
        do i = 1, nx
          if (mu(i, j) > 0.0_dp) then
            vb = 0.25_dp * (vv(i, j) + vv(i+1, j) + vv(i, j-1) + vv(i+1, j-1))
            uw_rel = uwu(i, j) - u(i, j)
            vw_rel = vwu(i, j) - vb
            cw = au(i, j) * p%rho_water * p%water_drag * sqrt(uw_rel * uw_rel + vw_rel * vw_rel)
            fx = (s11(i+1, j) - s11(i, j) + s12(i, j) - s12(i, j-1)) * inv_dx
            rhs = fx + tax(i, j) + cw * (cth * uwu(i, j) - sth * vwu(i, j)) - mu(i, j) * fu(i, j) * vwu(i, j)
            pu(i, j) = u(i, j) + dts * rhs / mu(i, j)
            ca(i, j) = 1.0_dp + dts * cw * cth / mu(i, j)
            cb(i, j) = dts * fu(i, j) + dts * cw * sth / mu(i, j)
          else
            pu(i, j) = 0.0_dp; ca(i, j) = 1.0_dp; cb(i, j) = 0.0_dp
          end if
          if (mv(i, j) > 0.0_dp) then
            ub = 0.25_dp * (uu(i, j) + uu(i-1, j) + uu(i, j+1) + uu(i-1, j+1))
            uw_rel = uwv(i, j) - ub
            vw_rel = vwv(i, j) - v(i, j)
            cw = av(i, j) * p%rho_water * p%water_drag * sqrt(uw_rel * uw_rel + vw_rel * vw_rel)
            fy = (s22(i, j+1) - s22(i, j) + s12(i, j) - s12(i-1, j)) * inv_dx
            rhs = fy + tay(i, j) + cw * (sth * uwv(i, j) + cth * vwv(i, j)) + mv(i, j) * fv(i, j) * uwv(i, j)
            pv(i, j) = v(i, j) + dts * rhs / mv(i, j)
            cva(i, j) = 1.0_dp + dts * cw * cth / mv(i, j)
            cvb(i, j) = dts * fv(i, j) + dts * cw * sth / mv(i, j)
          else
            pv(i, j) = 0.0_dp; cva(i, j) = 1.0_dp; cvb(i, j) = 0.0_dp
          end if
        end do
      end do
      do j = 1, ny
        do i = 1, nx
          if (mu(i, j) > 0.0_dp) then
            pvb = 0.25_dp * (pvat(i, j) + pvat(i+1, j) + pvat(i, j-1) + pvat(i+1, j-1))
            u(i, j) = (ca(i, j) * pu(i, j) + cb(i, j) * pvb) / (ca(i, j)**2 + cb(i, j)**2)
          else
            u(i, j) = 0.0_dp
          end if
          if (mv(i, j) > 0.0_dp) then
            pub = 0.25_dp * (puat(i, j) + puat(i-1, j) + puat(i, j+1) + puat(i-1, j+1))
            v(i, j) = (cva(i, j) * pv(i, j) - cvb(i, j) * pub) / (cva(i, j)**2 + cvb(i, j)**2)
          else
            v(i, j) = 0.0_dp
          end if
        end do
      end do
      ubar = ubar + u
      vbar = vbar + v
    end do
    ubar = ubar / nsub
    vbar = vbar / nsub

  contains

    !> u at face (i, j) for i in 0..nx, j in 0..ny+1, with walls (0) and no-slip ghosts (mirror, negated)
    pure function uat(ii, jj) result(r)
      integer, intent(in) :: ii, jj
      real(dp) :: r
      if (ii <= 0 .or. ii >= nx) then
        r = 0.0_dp
      else if (jj < 1) then
        r = -u(ii, 1)
      else if (jj > ny) then
        r = -u(ii, ny)
      else
        r = u(ii, jj)
      end if
    end function uat

    pure function vat(ii, jj) result(r)
      integer, intent(in) :: ii, jj
      real(dp) :: r
      if (jj <= 0 .or. jj >= ny) then
        r = 0.0_dp
      else if (ii < 1) then
        r = -v(1, jj)
      else if (ii > nx) then
        r = -v(nx, jj)
      else
        r = v(ii, jj)
      end if
    end function vat

    !> plain face values with 0 outside the domain (for averaging to the partner points)
    pure function vv(ii, jj) result(r)
      integer, intent(in) :: ii, jj
      real(dp) :: r
      if (ii < 1 .or. ii > nx .or. jj < 1 .or. jj > ny) then
        r = 0.0_dp
      else
        r = v(ii, jj)
      end if
    end function vv

    pure function uu(ii, jj) result(r)
      integer, intent(in) :: ii, jj
      real(dp) :: r
      if (ii < 1 .or. ii > nx .or. jj < 1 .or. jj > ny) then
        r = 0.0_dp
      else
        r = u(ii, jj)
      end if
    end function uu

    pure function pvat(ii, jj) result(r)
      integer, intent(in) :: ii, jj
      real(dp) :: r
      if (ii < 1 .or. ii > nx .or. jj < 1 .or. jj > ny) then
        r = 0.0_dp
      else
        r = pv(ii, jj)
      end if
    end function pvat

    pure function puat(ii, jj) result(r)
      integer, intent(in) :: ii, jj
      real(dp) :: r
      if (ii < 1 .or. ii > nx .or. jj < 1 .or. jj > ny) then
        r = 0.0_dp
      else
        r = pu(ii, jj)
      end if
    end function puat
  end subroutine bbm_dynamics

  !> Mean of the four corners of each cell: s12 at Z (0:nx, 0:ny) -> T (nx, ny).
  pure subroutine corner_to_centre(nx, ny, s12, s12t)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: s12(0:nx, 0:ny)
    real(dp), intent(out) :: s12t(nx, ny)
    integer :: i, j
    do j = 1, ny
      do i = 1, nx
        s12t(i, j) = 0.25_dp * (s12(i-1, j-1) + s12(i, j-1) + s12(i-1, j) + s12(i, j))
      end do
    end do
  end subroutine corner_to_centre

  !> Add a T-point increment to the corners as the mean over the cells touching each corner.
  pure subroutine add_centre_to_corner(nx, ny, inc, s12)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: inc(nx, ny)
    real(dp), intent(inout) :: s12(0:nx, 0:ny)
    real(dp) :: pad(0:nx+1, 0:ny+1)
    integer :: i, j
    pad(1:nx, 1:ny) = inc
    call fill_ghosts(nx, ny, pad)
    do j = 0, ny
      do i = 0, nx
        s12(i, j) = s12(i, j) + 0.25_dp * (pad(i, j) + pad(i+1, j) + pad(i, j+1) + pad(i+1, j+1))
      end do
    end do
  end subroutine add_centre_to_corner

  !> Constant-rate healing over dt (s): d <- min(1, d + dt/t_h) (nextsimDG ConstantHealing).
  pure subroutine bbm_heal(p, nx, ny, dt, dmg)
    type(truth_params), intent(in) :: p
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dt
    real(dp), intent(inout) :: dmg(nx, ny)
    dmg = min(1.0_dp, dmg + dt / p%healing_time)
  end subroutine bbm_heal

  !> New ice is undamaged: d <- [d (A - dA_new) + dA_new] / A, with A the concentration after growth.
  pure subroutine bbm_new_ice_undamaged(nx, ny, a, da_new, dmg)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: a(nx, ny), da_new(nx, ny)
    real(dp), intent(inout) :: dmg(nx, ny)
    where (a > 0.0_dp .and. da_new > 0.0_dp)
      dmg = min(1.0_dp, (dmg * max(0.0_dp, a - da_new) + min(da_new, a)) / a)
    end where
  end subroutine bbm_new_ice_undamaged
end module seaice_bbm
