! seaice_mevp: viscous-plastic momentum solve (Hibler 1979, ellipse e) with modified EVP iterations
! (Bouillon 2013, Kimmritz 2015/2016; adaptive alpha = beta "aEVP") on the closed C-grid (physics.md §1.2-1.4).
!
!   call mevp_solve(nx, ny, dx, dt, pd, a, vice, vsnow, taux, tauy, uo, vo, u, v, s1, s2, s12, nres, resid,
!                   alpha_max, ierr)
!     dx (m), dt (s) dynamics step; pd type(coarse_params)
!     a, vice, vsnow (nx,ny): concentration, ice and snow volume per area (m) at T-points
!     taux, tauy (nx,ny): air stress rho_a C_a |U_a| U_a at T-points (N m-2) (multiplied by A here)
!     uo, vo (nx,ny): ocean surface current at T-points (m s-1); averaged to the faces here
!     u, v (nx,ny) inout: face velocities (u east faces, v north faces, walls 0) (m s-1); in: u^n, out: u^(n+1)
!     s1, s2 (nx,ny) inout: s11+s22, s11-s22 at T-points (N m-1), carried between steps
!     s12 (0:nx,0:ny) inout: shear stress at all corners incl. the walls (N m-1); s12(i,j) is the NE corner of (i,j)
!     resid(nres) out: RMS change of the face velocities in iteration k (m s-1), k = 1..min(nres, n_evp)
!     alpha_max out: largest alpha used; ierr out: 0 ok, 3 non-finite velocity
!
!   call deformation(nx, ny, dx, u, v, div, shear)   divergence and shear (D_T^2 + D_S^2)^(1/2) at T (s-1)
!
! Discretisation: strain rates D_D, D_T at T from face velocities, D_S at corners (no-slip ghosts at the walls),
! Delta at T with D_S^2 averaged from the four corners, zeta = P/(2 Delta*), Delta* = (Delta^2 + Delta_min^2)^(1/2),
! replacement pressure P_R = P Delta/Delta*; eta at corners = P_Z/(2 e^2 Delta*_Z) from the corner's own Delta
! (D_D^2, D_T^2 and P averaged from the in-domain T-points, local D_S; CICE visc_method 'avg_strength').
! Momentum per face: [(beta+1) m/dt + c_w cos(theta)] u^(k+1) = beta m/dt u^k + m/dt u^n + div(sigma) + A tau_a
! + c_w [cos(theta) u_w - sin(theta) (v_w - v^k)] + m f (v^k - v_w)  (geostrophic tilt, Coriolis explicit in k),
! with c_w = A rho_w C_w |U_w - u^k|. Faces without ice mass keep u = 0.
module seaice_mevp
  use seaice_kinds, only: dp
  use seaice_constants, only: pi, deg_to_rad
  use seaice_params, only: coarse_params
  implicit none
  private
  public :: mevp_solve, deformation

  real(dp), parameter :: mass_tiny = 1.0e-3_dp   ! kg m-2: faces lighter than this carry no ice

contains

  subroutine mevp_solve(nx, ny, dx, dt, pd, a, vice, vsnow, taux, tauy, uo, vo, u, v, s1, s2, s12, nres, resid, &
                        alpha_max, ierr)
    integer, intent(in) :: nx, ny, nres
    real(dp), intent(in) :: dx, dt
    type(coarse_params), intent(in) :: pd
    real(dp), intent(in) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny), taux(nx, ny), tauy(nx, ny), uo(nx, ny), vo(nx, ny)
    real(dp), intent(inout) :: u(nx, ny), v(nx, ny), s1(nx, ny), s2(nx, ny), s12(0:nx, 0:ny)
    real(dp), intent(out) :: resid(nres), alpha_max
    integer, intent(out) :: ierr

    real(dp), allocatable :: uh(:, :), vh(:, :), unew(:, :), vnew(:, :), un(:, :), vn(:, :), press(:, :), &
                             acoef(:, :), mu(:, :), au(:, :), mv(:, :), av(:, :), tu(:, :), tv(:, :), &
                             uo_u(:, :), vo_u(:, :), uo_v(:, :), vo_v(:, :), zeta(:, :), alpha(:, :), ds(:, :), &
                             rcnt(:, :), ph(:, :), dd2(:, :), dt2(:, :)
    real(dp) :: rdx, e2inv, mt, e11, e22, dd, dtn, ds2, delta2, delta_s, z, al, pr, eta, az, vbar, ubar, du, dv, &
                cw, beta, mdt, div, rhs, cost, sint, rhocw, sumsq, cstar_fac
    integer :: i, j, k, stat, nface

    ierr = 0
    resid = 0.0_dp
    alpha_max = 0.0_dp
    allocate(uh(0:nx, 0:ny + 1), vh(0:nx + 1, 0:ny), unew(nx, ny), vnew(nx, ny), un(nx, ny), vn(nx, ny), &
             press(nx, ny), acoef(nx, ny), mu(nx, ny), au(nx, ny), mv(nx, ny), av(nx, ny), tu(nx, ny), &
             tv(nx, ny), uo_u(nx, ny), vo_u(nx, ny), uo_v(nx, ny), vo_v(nx, ny), zeta(0:nx + 1, 0:ny + 1), &
             alpha(0:nx + 1, 0:ny + 1), ds(0:nx, 0:ny), rcnt(0:nx, 0:ny), ph(0:nx + 1, 0:ny + 1), &
             dd2(0:nx + 1, 0:ny + 1), dt2(0:nx + 1, 0:ny + 1), stat=stat)
    if (stat /= 0) then
       ierr = 5
       return
    end if

    rdx = 1.0_dp / dx
    e2inv = 1.0_dp / pd%ecc**2
    cost = cos(pd%turning_angle * deg_to_rad)
    sint = sin(pd%turning_angle * deg_to_rad)
    rhocw = pd%rho_water * pd%c_water
    cstar_fac = pd%aevp_cstar * pi**2 * dt * rdx * rdx

    ! --- quantities fixed during the iterations: strength, mass, face averages of A, m, forcing
    do j = 1, ny
       do i = 1, nx
          press(i, j) = pd%p_star * vice(i, j) * exp(-pd%c_star * (1.0_dp - a(i, j)))
          mt = pd%rho_ice * vice(i, j) + pd%rho_snow * vsnow(i, j)
          acoef(i, j) = cstar_fac / max(mt, mass_tiny)   ! aEVP: alpha^2 = c* pi^2 zeta dt / (m dx^2)
          un(i, j) = u(i, j)
          vn(i, j) = v(i, j)
       end do
    end do
    mu = 0.0_dp; au = 0.0_dp; tu = 0.0_dp; uo_u = 0.0_dp; vo_u = 0.0_dp
    mv = 0.0_dp; av = 0.0_dp; tv = 0.0_dp; uo_v = 0.0_dp; vo_v = 0.0_dp
    do j = 1, ny
       do i = 1, nx - 1
          mu(i, j) = 0.5_dp * (pd%rho_ice * (vice(i, j) + vice(i + 1, j)) + pd%rho_snow * (vsnow(i, j) + vsnow(i + 1, j)))
          au(i, j) = 0.5_dp * (a(i, j) + a(i + 1, j))
          tu(i, j) = au(i, j) * 0.5_dp * (taux(i, j) + taux(i + 1, j))
          uo_u(i, j) = 0.5_dp * (uo(i, j) + uo(i + 1, j))
          vo_u(i, j) = 0.5_dp * (vo(i, j) + vo(i + 1, j))
       end do
    end do
    do j = 1, ny - 1
       do i = 1, nx
          mv(i, j) = 0.5_dp * (pd%rho_ice * (vice(i, j) + vice(i, j + 1)) + pd%rho_snow * (vsnow(i, j) + vsnow(i, j + 1)))
          av(i, j) = 0.5_dp * (a(i, j) + a(i, j + 1))
          tv(i, j) = av(i, j) * 0.5_dp * (tauy(i, j) + tauy(i, j + 1))
          uo_v(i, j) = 0.5_dp * (uo(i, j) + uo(i, j + 1))
          vo_v(i, j) = 0.5_dp * (vo(i, j) + vo(i, j + 1))
       end do
    end do
    ! 1 / number of in-domain cells around each corner (2 on a wall, 1 at a domain corner)
    do j = 0, ny
       do i = 0, nx
          rcnt(i, j) = 1.0_dp / real((min(i + 1, nx) - max(i, 1) + 1) * (min(j + 1, ny) - max(j, 1) + 1), dp)
       end do
    end do

    ! halo velocities: walls are 0; ghost rows/columns outside are set for no-slip in every iteration
    uh = 0.0_dp
    vh = 0.0_dp
    uh(1:nx-1, 1:ny) = u(1:nx-1, :)
    vh(1:nx, 1:ny-1) = v(:, 1:ny-1)
    zeta = 0.0_dp
    alpha = 0.0_dp
    dd2 = 0.0_dp
    dt2 = 0.0_dp
    ph = 0.0_dp
    ph(1:nx, 1:ny) = press
    if (.not. pd%rheology_on) then
       s1 = 0.0_dp; s2 = 0.0_dp; s12 = 0.0_dp
    end if
    if (.not. pd%aevp) alpha(1:nx, 1:ny) = pd%alpha_fixed
    if (pd%aevp) alpha(1:nx, 1:ny) = pd%aevp_alpha_min

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
          ! T-points: viscosities, alpha, s1, s2
          do j = 1, ny
             do i = 1, nx
                e11 = (uh(i, j) - uh(i - 1, j)) * rdx
                e22 = (vh(i, j) - vh(i, j - 1)) * rdx
                dd = e11 + e22
                dtn = e11 - e22
                ds2 = 0.25_dp * (ds(i, j)**2 + ds(i - 1, j)**2 + ds(i, j - 1)**2 + ds(i - 1, j - 1)**2)
                delta2 = dd * dd + e2inv * (dtn * dtn + ds2)
                delta_s = sqrt(delta2 + pd%delta_min**2)
                z = 0.5_dp * press(i, j) / delta_s
                if (pd%replacement_pressure) then
                   pr = 2.0_dp * z * sqrt(delta2)
                else
                   pr = press(i, j)
                end if
                if (pd%aevp) then
                   al = max(pd%aevp_alpha_min, sqrt(acoef(i, j) * z))
                   alpha(i, j) = al
                else
                   al = pd%alpha_fixed
                end if
                zeta(i, j) = z
                dd2(i, j) = dd * dd
                dt2(i, j) = dtn * dtn
                s1(i, j) = s1(i, j) + (2.0_dp * z * dd - pr - s1(i, j)) / al
                s2(i, j) = s2(i, j) + (2.0_dp * z * e2inv * dtn - s2(i, j)) / al
             end do
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
                      / sqrt(delta2 + pd%delta_min**2)
                az = (alpha(i, j) + alpha(i + 1, j) + alpha(i, j + 1) + alpha(i + 1, j + 1)) * rcnt(i, j)
                s12(i, j) = s12(i, j) + (eta * ds(i, j) - s12(i, j)) / az
             end do
          end do
       end if

       ! momentum at east faces (interior only; the wall faces stay 0)
       sumsq = 0.0_dp
       nface = 0
       do j = 1, ny
          do i = 1, nx - 1
             if (mu(i, j) > mass_tiny) then
                vbar = 0.25_dp * (vh(i, j) + vh(i + 1, j) + vh(i, j - 1) + vh(i + 1, j - 1))
                du = uo_u(i, j) - uh(i, j)
                dv = vo_u(i, j) - vbar
                cw = au(i, j) * rhocw * sqrt(du * du + dv * dv)
                beta = 0.5_dp * (alpha(i, j) + alpha(i + 1, j))
                mdt = mu(i, j) / dt
                div = 0.0_dp
                if (pd%rheology_on) div = (0.5_dp * (s1(i + 1, j) + s2(i + 1, j) - s1(i, j) - s2(i, j)) &
                                           + s12(i, j) - s12(i, j - 1)) * rdx
                rhs = beta * mdt * uh(i, j) + mdt * un(i, j) + div + tu(i, j) &
                      + cw * (cost * uo_u(i, j) - sint * dv) + mu(i, j) * pd%coriolis * (vbar - vo_u(i, j))
                unew(i, j) = rhs / ((beta + 1.0_dp) * mdt + cw * cost)
                sumsq = sumsq + (unew(i, j) - uh(i, j))**2
                nface = nface + 1
             else
                unew(i, j) = 0.0_dp
             end if
          end do
       end do
       ! momentum at north faces
       do j = 1, ny - 1
          do i = 1, nx
             if (mv(i, j) > mass_tiny) then
                ubar = 0.25_dp * (uh(i, j) + uh(i - 1, j) + uh(i, j + 1) + uh(i - 1, j + 1))
                du = uo_v(i, j) - ubar
                dv = vo_v(i, j) - vh(i, j)
                cw = av(i, j) * rhocw * sqrt(du * du + dv * dv)
                beta = 0.5_dp * (alpha(i, j) + alpha(i, j + 1))
                mdt = mv(i, j) / dt
                div = 0.0_dp
                if (pd%rheology_on) div = (0.5_dp * (s1(i, j + 1) - s2(i, j + 1) - s1(i, j) + s2(i, j)) &
                                           + s12(i, j) - s12(i - 1, j)) * rdx
                rhs = beta * mdt * vh(i, j) + mdt * vn(i, j) + div + tv(i, j) &
                      + cw * (cost * vo_v(i, j) + sint * du) - mv(i, j) * pd%coriolis * (ubar - uo_v(i, j))
                vnew(i, j) = rhs / ((beta + 1.0_dp) * mdt + cw * cost)
                sumsq = sumsq + (vnew(i, j) - vh(i, j))**2
                nface = nface + 1
             else
                vnew(i, j) = 0.0_dp
             end if
          end do
       end do
       uh(1:nx-1, 1:ny) = unew(1:nx-1, :)
       vh(1:nx, 1:ny-1) = vnew(:, 1:ny-1)
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
  subroutine deformation(nx, ny, dx, u, v, div, shear)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dx, u(nx, ny), v(nx, ny)
    real(dp), intent(out) :: div(nx, ny), shear(nx, ny)
    real(dp) :: uh(0:nx, 0:ny + 1), vh(0:nx + 1, 0:ny), ds(0:nx, 0:ny), e11, e22, ds2
    integer :: i, j
    uh = 0.0_dp
    vh = 0.0_dp
    uh(1:nx-1, 1:ny) = u(1:nx-1, :)
    vh(1:nx, 1:ny-1) = v(:, 1:ny-1)
    uh(1:nx-1, 0) = -uh(1:nx-1, 1)
    uh(1:nx-1, ny + 1) = -uh(1:nx-1, ny)
    vh(0, 1:ny-1) = -vh(1, 1:ny-1)
    vh(nx + 1, 1:ny-1) = -vh(nx, 1:ny-1)
    do j = 0, ny
       do i = 0, nx
          ds(i, j) = (uh(i, j + 1) - uh(i, j) + vh(i + 1, j) - vh(i, j)) / dx
       end do
    end do
    do j = 1, ny
       do i = 1, nx
          e11 = (uh(i, j) - uh(i - 1, j)) / dx
          e22 = (vh(i, j) - vh(i, j - 1)) / dx
          ds2 = 0.25_dp * (ds(i, j)**2 + ds(i - 1, j)**2 + ds(i, j - 1)**2 + ds(i - 1, j - 1)**2)
          div(i, j) = e11 + e22
          shear(i, j) = sqrt((e11 - e22)**2 + ds2)
       end do
    end do
  end subroutine deformation

end module seaice_mevp
