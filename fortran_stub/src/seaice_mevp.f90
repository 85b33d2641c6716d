! seaice_mevp: viscous-plastic momentum solve (Hibler 1979, ellipse e) with modified EVP iterations
! (Bouillon 2013, Kimmritz 2015/2016; adaptive alpha = beta "aEVP") on the closed C-grid (physics.md §1.2-1.4).
!
!   call mevp_solve(nx, ny, dx, dt, pd, a, vice, vsnow, taux, tauy, uo, vo, ocean, fcor, u, v, s1, s2, s12, nres,
!                   resid, alpha_max, ierr [, strength])
!     dx (m), dt (s) dynamics step; pd type(coarse_params)
!     a, vice, vsnow (nx,ny): concentration, ice and snow volume per area (m) at T-points
!     taux, tauy (nx,ny): air stress rho_a C_a |U_a| U_a at T-points (N m-2) (multiplied by A here)
!     uo, vo (nx,ny): ocean surface current at T-points (m s-1); averaged to the faces here
!     ocean (nx,ny): 1 ocean, 0 land (seaice_grid); fcor (nx,ny): Coriolis parameter f at T-points (s-1), averaged
!                    to the faces (seaice_grid::face_coriolis)
!     u, v (nx,ny) inout: face velocities (u east faces, v north faces, walls 0) (m s-1); in: u^n, out: u^(n+1)
!     s1, s2 (nx,ny) inout: s11+s22, s11-s22 at T-points (N m-1), carried between steps
!     s12 (0:nx,0:ny) inout: shear stress at all corners incl. the walls (N m-1); s12(i,j) is the NE corner of (i,j)
!     resid(nres) out: RMS change of the face velocities in iteration k (m s-1), k = 1..min(nres, n_evp)
!     alpha_max out: largest alpha used; ierr out: 0 ok, 3 non-finite velocity
!     strength (nx,ny) optional, in: factor on the ice strength P per cell (1); absent = 1 (a spatially varying
!                      P*, e.g. a member's stochastic strength field: coupling/member_physics.py)
!
!   call deformation(nx, ny, dx, u, v, div, shear [, ocean])   divergence and shear (D_T^2 + D_S^2)^(1/2) at T
!                                                              (s-1); with land if ocean (nx,ny) is given
!
! Discretisation: strain rates D_D, D_T at T from face velocities, D_S at corners (no-slip ghosts at the walls),
! Delta at T with D_S^2 averaged from the four corners, zeta = P/(2 Delta*), Delta* = (Delta^2 + Delta_min^2)^(1/2),
! replacement pressure P_R = P Delta/Delta*; eta at corners = P_Z/(2 e^2 Delta*_Z) from the corner's own Delta
! (D_D^2, D_T^2 and P averaged from the in-domain T-points, local D_S; CICE visc_method 'avg_strength').
! Momentum per face: [(beta+1) m/dt + c_w cos(theta)] u^(k+1) = beta m/dt u^k + m/dt u^n + div(sigma) + A tau_a
! + c_w [cos(theta) u_w - sin(theta) (v_w - v^k)] + m f (v^k - v_w)  (geostrophic tilt, Coriolis explicit in k),
! with c_w = A rho_w C_w |U_w - u^k|. Faces without ice mass keep u = 0.
! Land (seaice_grid): faces touching land are closed (u = 0) like the walls; at coastal corners D_S is the no-slip
! one-sided difference, and the corner averages of P, D_D^2, D_T^2 and alpha run over the ocean cells only (as
! over the in-domain cells at the walls). Without land every extra pass is skipped (bit-identical results).
module seaice_mevp
  use seaice_kinds, only: dp
  use seaice_constants, only: pi, deg_to_rad
  use seaice_params, only: coarse_params
  use seaice_grid, only: land_geometry, coastal_shear, face_coriolis
  implicit none
  private
  public :: mevp_solve, deformation

  real(dp), parameter :: mass_tiny = 1.0e-3_dp   ! kg m-2: faces lighter than this carry no ice

contains

  subroutine mevp_solve(nx, ny, dx, dt, pd, a, vice, vsnow, taux, tauy, uo, vo, ocean, fcor, u, v, s1, s2, s12, &
                        nres, resid, alpha_max, ierr, strength)
    integer, intent(in) :: nx, ny, nres
    real(dp), intent(in) :: dx, dt
    type(coarse_params), intent(in) :: pd
    real(dp), intent(in) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny), taux(nx, ny), tauy(nx, ny), uo(nx, ny), vo(nx, ny)
    real(dp), intent(in) :: ocean(nx, ny), fcor(nx, ny)
    real(dp), intent(inout) :: u(nx, ny), v(nx, ny), s1(nx, ny), s2(nx, ny), s12(0:nx, 0:ny)
    real(dp), intent(out) :: resid(nres), alpha_max
    integer, intent(out) :: ierr
    real(dp), intent(in), optional :: strength(nx, ny)

    ! Work arrays. Face arrays (u: 1..nx-1 x 1..ny, v: 1..nx x 1..ny-1) hold what is fixed during the iterations:
    ! m/dt (floored), a 0/1 ice mask, the constant part of the right-hand side, A rho_w C_w, m f, the current.
    real(dp), allocatable :: uh(:, :), vh(:, :), unew(:, :), vnew(:, :), press(:, :), acoef(:, :), &
                             mdt_u(:, :), msk_u(:, :), c_u(:, :), cwc_u(:, :), mf_u(:, :), uo_u(:, :), vo_u(:, :), &
                             mdt_v(:, :), msk_v(:, :), c_v(:, :), cwc_v(:, :), mf_v(:, :), uo_v(:, :), vo_v(:, :), &
                             alpha(:, :), ds(:, :), rcnt(:, :), ph(:, :), dd2(:, :), dt2(:, :), &
                             ou(:, :), ov(:, :), ouh(:, :), ovh(:, :), fu(:, :), fv(:, :)
    integer, allocatable :: nocean(:, :), coast(:, :), landc(:, :)
    real(dp) :: rdx, e2inv, mt, mface, e11, e22, dd, dtn, ds2, delta2, z, al, ral, pr, eta, az, vbar, ubar, du, dv, &
                cw, beta, div, rhs, cost, sint, rhocw, sumsq, cstar_fac, dmin2, amin, rp
    integer :: i, j, k, c, stat, nface, ncoast, nland
    logical :: has_land

    ierr = 0
    resid = 0.0_dp
    alpha_max = 0.0_dp
    allocate(uh(0:nx, 0:ny + 1), vh(0:nx + 1, 0:ny), unew(nx, ny), vnew(nx, ny), press(nx, ny), acoef(nx, ny), &
             mdt_u(nx, ny), msk_u(nx, ny), c_u(nx, ny), cwc_u(nx, ny), mf_u(nx, ny), uo_u(nx, ny), vo_u(nx, ny), &
             mdt_v(nx, ny), msk_v(nx, ny), c_v(nx, ny), cwc_v(nx, ny), mf_v(nx, ny), uo_v(nx, ny), vo_v(nx, ny), &
             alpha(0:nx + 1, 0:ny + 1), ds(0:nx, 0:ny), rcnt(0:nx, 0:ny), ph(0:nx + 1, 0:ny + 1), &
             dd2(0:nx + 1, 0:ny + 1), dt2(0:nx + 1, 0:ny + 1), ou(nx, ny), ov(nx, ny), ouh(0:nx, 0:ny + 1), &
             ovh(0:nx + 1, 0:ny), fu(nx, ny), fv(nx, ny), nocean(0:nx, 0:ny), stat=stat)
    if (stat /= 0) then
       ierr = 5
       return
    end if

    ! scalar parameters as locals; switches as numbers so that the inner loops are branch-free (vectorisable)
    rdx = 1.0_dp / dx
    e2inv = 1.0_dp / pd%ecc**2
    cost = cos(pd%turning_angle * deg_to_rad)
    sint = sin(pd%turning_angle * deg_to_rad)
    rhocw = pd%rho_water * pd%c_water
    call face_coriolis(nx, ny, fcor, fu, fv)
    call land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
    nland = count(ocean <= 0.5_dp)
    has_land = nland > 0
    allocate(landc(2, nland))
    c = 0
    do j = 1, ny
       do i = 1, nx
          if (ocean(i, j) <= 0.5_dp) then
             c = c + 1
             landc(:, c) = [i, j]
          end if
       end do
    end do
    ! open-face flags with the halo layout of uh, vh (0 on walls, outside and on land faces)
    ouh = 0.0_dp
    ovh = 0.0_dp
    ouh(1:nx-1, 1:ny) = ou(1:nx-1, :)
    ovh(1:nx, 1:ny-1) = ov(:, 1:ny-1)
    dmin2 = pd%delta_min**2
    rp = merge(1.0_dp, 0.0_dp, pd%replacement_pressure)
    if (pd%aevp) then                 ! alpha = max(amin, sqrt(acoef zeta)); fixed alpha: acoef = 0, amin = alpha
       cstar_fac = pd%aevp_cstar * pi**2 * dt * rdx * rdx
       amin = pd%aevp_alpha_min
    else
       cstar_fac = 0.0_dp
       amin = pd%alpha_fixed
    end if

    ! --- quantities fixed during the iterations
    do j = 1, ny
       do i = 1, nx
          press(i, j) = pd%p_star * vice(i, j) * exp(-pd%c_star * (1.0_dp - a(i, j)))
          mt = pd%rho_ice * vice(i, j) + pd%rho_snow * vsnow(i, j)
          acoef(i, j) = cstar_fac / max(mt, mass_tiny)   ! aEVP: alpha^2 = c* pi^2 zeta dt / (m dx^2)
       end do
    end do
    if (present(strength)) press = press * strength
    nface = 0
    mdt_u = 1.0_dp; msk_u = 0.0_dp; c_u = 0.0_dp; cwc_u = 0.0_dp; mf_u = 0.0_dp; uo_u = 0.0_dp; vo_u = 0.0_dp
    mdt_v = 1.0_dp; msk_v = 0.0_dp; c_v = 0.0_dp; cwc_v = 0.0_dp; mf_v = 0.0_dp; uo_v = 0.0_dp; vo_v = 0.0_dp
    do j = 1, ny
       do i = 1, nx - 1
          mface = 0.5_dp * (pd%rho_ice * (vice(i, j) + vice(i + 1, j)) + pd%rho_snow * (vsnow(i, j) + vsnow(i + 1, j)))
          uo_u(i, j) = 0.5_dp * (uo(i, j) + uo(i + 1, j))
          vo_u(i, j) = 0.5_dp * (vo(i, j) + vo(i + 1, j))
          if (mface > mass_tiny .and. ou(i, j) > 0.5_dp) then
             nface = nface + 1
             msk_u(i, j) = 1.0_dp
             mdt_u(i, j) = mface / dt
             cwc_u(i, j) = 0.5_dp * (a(i, j) + a(i + 1, j)) * rhocw
             mf_u(i, j) = mface * fu(i, j)
             ! m/dt u^n + A tau_ax - m f v_w (tilt)
             c_u(i, j) = mdt_u(i, j) * u(i, j) + 0.5_dp * (a(i, j) + a(i + 1, j)) * 0.5_dp * (taux(i, j) + taux(i + 1, j)) &
                         - mf_u(i, j) * vo_u(i, j)
          end if
       end do
    end do
    do j = 1, ny - 1
       do i = 1, nx
          mface = 0.5_dp * (pd%rho_ice * (vice(i, j) + vice(i, j + 1)) + pd%rho_snow * (vsnow(i, j) + vsnow(i, j + 1)))
          uo_v(i, j) = 0.5_dp * (uo(i, j) + uo(i, j + 1))
          vo_v(i, j) = 0.5_dp * (vo(i, j) + vo(i, j + 1))
          if (mface > mass_tiny .and. ov(i, j) > 0.5_dp) then
             nface = nface + 1
             msk_v(i, j) = 1.0_dp
             mdt_v(i, j) = mface / dt
             cwc_v(i, j) = 0.5_dp * (a(i, j) + a(i, j + 1)) * rhocw
             mf_v(i, j) = mface * fv(i, j)
             ! m/dt v^n + A tau_ay + m f u_w (tilt)
             c_v(i, j) = mdt_v(i, j) * v(i, j) + 0.5_dp * (a(i, j) + a(i, j + 1)) * 0.5_dp * (tauy(i, j) + tauy(i, j + 1)) &
                         + mf_v(i, j) * uo_v(i, j)
          end if
       end do
    end do
    ! 1 / number of in-domain cells around each corner (2 on a wall, 1 at a domain corner)
    do j = 0, ny
       do i = 0, nx
          rcnt(i, j) = 1.0_dp / real((min(i + 1, nx) - max(i, 1) + 1) * (min(j + 1, ny) - max(j, 1) + 1), dp)
       end do
    end do
    ! with land: 1 / number of ocean cells around each coastal corner (1 where there is none: nothing to average)
    do c = 1, ncoast
       rcnt(coast(1, c), coast(2, c)) = 1.0_dp / real(max(1, nocean(coast(1, c), coast(2, c))), dp)
    end do

    ! halo velocities: walls are 0; ghost rows/columns outside are set for no-slip in every iteration
    uh = 0.0_dp
    vh = 0.0_dp
    uh(1:nx-1, 1:ny) = u(1:nx-1, :) * ou(1:nx-1, :)
    vh(1:nx, 1:ny-1) = v(:, 1:ny-1) * ov(:, 1:ny-1)
    alpha = 0.0_dp
    dd2 = 0.0_dp
    dt2 = 0.0_dp
    ph = 0.0_dp
    ph(1:nx, 1:ny) = press * ocean
    alpha(1:nx, 1:ny) = amin
    do c = 1, nland   ! land cells hold no stress; their alpha is left out of the corner averages
       s1(landc(1, c), landc(2, c)) = 0.0_dp
       s2(landc(1, c), landc(2, c)) = 0.0_dp
       alpha(landc(1, c), landc(2, c)) = 0.0_dp
    end do
    do c = 1, ncoast
       if (nocean(coast(1, c), coast(2, c)) == 0) s12(coast(1, c), coast(2, c)) = 0.0_dp
    end do
    unew = 0.0_dp
    vnew = 0.0_dp
    if (.not. pd%rheology_on) then   ! free drift: no stress, so the stress divergence below is zero
       s1 = 0.0_dp; s2 = 0.0_dp; s12 = 0.0_dp
    end if

    do k = 1, pd%n_evp
       uh(1:nx-1, 0) = -uh(1:nx-1, 1)
       uh(1:nx-1, ny + 1) = -uh(1:nx-1, ny)
       vh(0, 1:ny-1) = -vh(1, 1:ny-1)
       vh(nx + 1, 1:ny-1) = -vh(nx, 1:ny-1)

       if (pd%rheology_on) then
          ! shear strain rate D_S at every corner
          do j = 0, ny
             do i = 0, nx
                ds(i, j) = (uh(i, j + 1) - uh(i, j) + vh(i + 1, j) - vh(i, j)) * rdx
             end do
          end do
          if (has_land) call coastal_shear(nx, ny, rdx, uh, vh, ouh, ovh, ncoast, coast, ds)
          ! T-points: viscosities, alpha, s1, s2
          do j = 1, ny
             do i = 1, nx
                e11 = (uh(i, j) - uh(i - 1, j)) * rdx
                e22 = (vh(i, j) - vh(i, j - 1)) * rdx
                dd = e11 + e22
                dtn = e11 - e22
                ds2 = 0.25_dp * (ds(i, j)**2 + ds(i - 1, j)**2 + ds(i, j - 1)**2 + ds(i - 1, j - 1)**2)
                delta2 = dd * dd + e2inv * (dtn * dtn + ds2)
                z = 0.5_dp * press(i, j) / sqrt(delta2 + dmin2)
                pr = rp * 2.0_dp * z * sqrt(delta2) + (1.0_dp - rp) * press(i, j)
                al = max(amin, sqrt(acoef(i, j) * z))
                ral = 1.0_dp / al
                alpha(i, j) = al
                dd2(i, j) = dd * dd
                dt2(i, j) = dtn * dtn
                s1(i, j) = s1(i, j) + (2.0_dp * z * dd - pr - s1(i, j)) * ral
                s2(i, j) = s2(i, j) + (2.0_dp * z * e2inv * dtn - s2(i, j)) * ral
             end do
          end do
          do c = 1, nland
             alpha(landc(1, c), landc(2, c)) = 0.0_dp
          end do
          ! corners: eta = P_Z / (2 e^2 Delta*_Z) with P_Z, D_D^2, D_T^2 averaged over the in-domain T-points and
          ! the local D_S (CICE 'avg_strength'): unlike averaging zeta, a rigid neighbour cannot push the corner
          ! stress beyond the yield curve of the deforming ice
          do j = 0, ny
             do i = 0, nx
                delta2 = (dd2(i, j) + dd2(i + 1, j) + dd2(i, j + 1) + dd2(i + 1, j + 1)) * rcnt(i, j) &
                         + e2inv * ((dt2(i, j) + dt2(i + 1, j) + dt2(i, j + 1) + dt2(i + 1, j + 1)) * rcnt(i, j) &
                                    + ds(i, j)**2)
                eta = 0.5_dp * e2inv * (ph(i, j) + ph(i + 1, j) + ph(i, j + 1) + ph(i + 1, j + 1)) * rcnt(i, j) &
                      / sqrt(delta2 + dmin2)
                az = max(amin, (alpha(i, j) + alpha(i + 1, j) + alpha(i, j + 1) + alpha(i + 1, j + 1)) * rcnt(i, j))
                s12(i, j) = s12(i, j) + (eta * ds(i, j) - s12(i, j)) / az
             end do
          end do
       end if

       ! momentum at east faces (interior only; the wall faces stay 0); faces without ice get msk = 0
       do j = 1, ny
          do i = 1, nx - 1
             vbar = 0.25_dp * (vh(i, j) + vh(i + 1, j) + vh(i, j - 1) + vh(i + 1, j - 1))
             du = uo_u(i, j) - uh(i, j)
             dv = vo_u(i, j) - vbar
             cw = cwc_u(i, j) * sqrt(du * du + dv * dv)
             beta = 0.5_dp * (alpha(i, j) + alpha(i + 1, j))
             div = (0.5_dp * (s1(i + 1, j) + s2(i + 1, j) - s1(i, j) - s2(i, j)) + s12(i, j) - s12(i, j - 1)) * rdx
             rhs = beta * mdt_u(i, j) * uh(i, j) + c_u(i, j) + div + cw * (cost * uo_u(i, j) - sint * dv) &
                   + mf_u(i, j) * vbar
             unew(i, j) = msk_u(i, j) * rhs / ((beta + 1.0_dp) * mdt_u(i, j) + cw * cost)
          end do
       end do
       ! momentum at north faces
       do j = 1, ny - 1
          do i = 1, nx
             ubar = 0.25_dp * (uh(i, j) + uh(i - 1, j) + uh(i, j + 1) + uh(i - 1, j + 1))
             du = uo_v(i, j) - ubar
             dv = vo_v(i, j) - vh(i, j)
             cw = cwc_v(i, j) * sqrt(du * du + dv * dv)
             beta = 0.5_dp * (alpha(i, j) + alpha(i, j + 1))
             div = (0.5_dp * (s1(i, j + 1) - s2(i, j + 1) - s1(i, j) + s2(i, j)) + s12(i, j) - s12(i - 1, j)) * rdx
             rhs = beta * mdt_v(i, j) * vh(i, j) + c_v(i, j) + div + cw * (cost * vo_v(i, j) + sint * du) &
                   - mf_v(i, j) * ubar
             vnew(i, j) = msk_v(i, j) * rhs / ((beta + 1.0_dp) * mdt_v(i, j) + cw * cost)
          end do
       end do
       ! residual and update (a separate pass keeps the momentum loops free of reductions)
       sumsq = 0.0_dp
       do j = 1, ny
          do i = 1, nx - 1
             sumsq = sumsq + (unew(i, j) - uh(i, j))**2
             uh(i, j) = unew(i, j)
          end do
       end do
       do j = 1, ny - 1
          do i = 1, nx
             sumsq = sumsq + (vnew(i, j) - vh(i, j))**2
             vh(i, j) = vnew(i, j)
          end do
       end do
       if (k <= nres) resid(k) = sqrt(sumsq / max(nface, 1))
    end do

    u(1:nx-1, :) = uh(1:nx-1, 1:ny)
    u(nx, :) = 0.0_dp
    v(:, 1:ny-1) = vh(1:nx, 1:ny-1)
    v(:, ny) = 0.0_dp
    alpha_max = maxval(alpha(1:nx, 1:ny))
    if (.not. (all(abs(u) < huge(1.0_dp)) .and. all(abs(v) < huge(1.0_dp)))) ierr = 3
  end subroutine mevp_solve

  ! Divergence D_D and shear (D_T^2 + D_S^2)^(1/2) at T-points (s-1), D_S averaged as D_S^2 from the corners.
  ! ocean (nx,ny), optional: land as in mevp_solve (closed faces, no-slip coastal corners); land cells get 0.
  subroutine deformation(nx, ny, dx, u, v, div, shear, ocean)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dx, u(nx, ny), v(nx, ny)
    real(dp), intent(out) :: div(nx, ny), shear(nx, ny)
    real(dp), intent(in), optional :: ocean(nx, ny)
    real(dp) :: uh(0:nx, 0:ny + 1), vh(0:nx + 1, 0:ny), ds(0:nx, 0:ny), e11, e22, ds2
    real(dp), allocatable :: ou(:, :), ov(:, :), ouh(:, :), ovh(:, :)
    integer, allocatable :: nocean(:, :), coast(:, :)
    integer :: i, j, ncoast
    uh = 0.0_dp
    vh = 0.0_dp
    uh(1:nx-1, 1:ny) = u(1:nx-1, :)
    vh(1:nx, 1:ny-1) = v(:, 1:ny-1)
    ncoast = 0
    if (present(ocean)) then
       allocate(ou(nx, ny), ov(nx, ny), ouh(0:nx, 0:ny + 1), ovh(0:nx + 1, 0:ny), nocean(0:nx, 0:ny))
       call land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
       ouh = 0.0_dp
       ovh = 0.0_dp
       ouh(1:nx-1, 1:ny) = ou(1:nx-1, :)
       ovh(1:nx, 1:ny-1) = ov(:, 1:ny-1)
       uh = uh * ouh
       vh = vh * ovh
    end if
    uh(1:nx-1, 0) = -uh(1:nx-1, 1)
    uh(1:nx-1, ny + 1) = -uh(1:nx-1, ny)
    vh(0, 1:ny-1) = -vh(1, 1:ny-1)
    vh(nx + 1, 1:ny-1) = -vh(nx, 1:ny-1)
    do j = 0, ny
       do i = 0, nx
          ds(i, j) = (uh(i, j + 1) - uh(i, j) + vh(i + 1, j) - vh(i, j)) / dx
       end do
    end do
    if (ncoast > 0) call coastal_shear(nx, ny, 1.0_dp / dx, uh, vh, ouh, ovh, ncoast, coast, ds)
    do j = 1, ny
       do i = 1, nx
          e11 = (uh(i, j) - uh(i - 1, j)) / dx
          e22 = (vh(i, j) - vh(i, j - 1)) / dx
          ds2 = 0.25_dp * (ds(i, j)**2 + ds(i - 1, j)**2 + ds(i, j - 1)**2 + ds(i - 1, j - 1)**2)
          div(i, j) = e11 + e22
          shear(i, j) = sqrt((e11 - e22)**2 + ds2)
       end do
    end do
    if (present(ocean)) then
       where (ocean <= 0.5_dp)
          div = 0.0_dp
          shear = 0.0_dp
       end where
    end if
  end subroutine deformation

end module seaice_mevp
