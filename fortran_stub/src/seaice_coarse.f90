! seaice_coarse: one call of the coarse model = advance the state by `duration` seconds (12 h in production)
! in nsteps = ceiling(duration / dt_dyn) equal substeps (physics.md §1.7). Per substep:
!   1. forcing interpolated linearly in time to the middle of the substep (f0 at the start, f1 at the end);
!   2. mEVP momentum solve (seaice_mevp) -> u, v, stresses;  3. transport of A, V, Vs (seaice_transport),
!      split order alternating with the global substep counter, then the ridging cap A <= 1;
!   4. thermodynamics (seaice_thermo);  5. ice minima (seaice_minima), whose removed ice melts out of the slab.
!
!   call coarse_run(pd, tp, nx, ny, dx, duration, istep0, a, vice, vsnow, tsurf, tos, u, v, s1, s2, s12,
!                   f0, f1, nres, resid, info, ierr [, ocean, fcor, strength])
!     s12(0:nx,0:ny): corner stresses incl. the walls; f0, f1 (nx,ny,nforc): forcing (seaice_forcing order)
!     resid(nres) out: mEVP residual per iteration of the last substep
!     info(ninfo) out: see the info_* indices; ierr out: 0 ok, 2 bad parameter, 3 non-finite velocity,
!                     4 non-finite thermodynamics, 5 allocation failure, 6 transport CFL failure, 7 bad forcing
!     ocean(nx,ny)  optional, in: 1 ocean, 0 land (default: all ocean, the closed box). The two trailing optional
!                   arguments leave today's argument list valid: a caller without land passes neither.
!                   Land (docs/physics-land.md): on entry, land cells are set to hold no ice (a = vice = vsnow = 0,
!                   no stress) and faces touching land to u = v = 0; then faces touching land are closed like the
!                   walls (no velocity, no transport flux), corners touching land are no-slip, thermodynamics and
!                   the minima run over the ocean only, and the info means are over the ocean cells.
!     fcor(nx,ny)   optional, in: Coriolis parameter f at the cell centres (s-1), e.g. 2 Omega sin(latitude);
!                   averaged to the faces. Default: the constant pd%coriolis (today's box).
module seaice_coarse
  use seaice_kinds, only: dp
  use seaice_params, only: coarse_params, thermo_params
  use seaice_forcing, only: interp_time, air_stress, f_uas, f_vas, f_tas, f_huss, f_rsds, f_rlds, f_prsn, &
                            f_uo, f_vo, nforc
  use seaice_mevp, only: mevp_solve
  use seaice_transport, only: advect
  use seaice_thermo, only: thermo_step
  use seaice_minima, only: ridge_cap, apply_minima
  use seaice_grid, only: land_geometry, count_ocean
  implicit none
  private
  public :: coarse_run, check_coarse_params
  integer, parameter, public :: info_resid_last = 1, info_resid_first = 2, info_substeps = 3, info_nsteps = 4, &
                                info_alpha_max = 5, info_new_ice = 6, info_minima_removed = 7, info_courant = 8, &
                                ninfo = 8

contains

  ! 0 if the parameters are usable, else 2
  integer function check_coarse_params(pd) result(ierr)
    type(coarse_params), intent(in) :: pd
    ierr = 0
    if (.not. (pd%dt_dyn > 0.0_dp) .or. pd%n_evp < 1 .or. .not. (pd%ecc > 0.0_dp) .or. &
        .not. (pd%rho_ice > 0.0_dp) .or. pd%limiter < 0 .or. pd%limiter > 3 .or. &
        .not. (pd%cfl_max > 0.0_dp .and. pd%cfl_max <= 1.0_dp) .or. .not. (pd%aevp_alpha_min > 0.0_dp) .or. &
        .not. (pd%alpha_fixed > 0.0_dp)) ierr = 2
  end function check_coarse_params

  subroutine coarse_run(pd, tp, nx, ny, dx, duration, istep0, a, vice, vsnow, tsurf, tos, u, v, s1, s2, s12, &
                        f0, f1, nres, resid, info, ierr, ocean, fcor, strength)
    type(coarse_params), intent(in) :: pd
    type(thermo_params), intent(in) :: tp
    integer, intent(in) :: nx, ny, istep0, nres
    real(dp), intent(in) :: dx, duration
    real(dp), intent(inout) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny), tsurf(nx, ny), tos(nx, ny), &
                               u(nx, ny), v(nx, ny), s1(nx, ny), s2(nx, ny), s12(0:nx, 0:ny)
    real(dp), intent(in) :: f0(nx, ny, nforc), f1(nx, ny, nforc)
    real(dp), intent(out) :: resid(nres), info(ninfo)
    integer, intent(out) :: ierr
    real(dp), intent(in), optional :: ocean(nx, ny), fcor(nx, ny), strength(nx, ny)
    real(dp), allocatable :: f(:, :, :), taux(:, :), tauy(:, :), wspd(:, :), q(:, :, :), da_new(:, :), &
                             dv_new(:, :), v_removed(:, :), ocn(:, :), fc(:, :), ou(:, :), ov(:, :)
    integer, allocatable :: nocean(:, :), coast(:, :)
    real(dp) :: dt, w, alpha_max, heat_cap
    integer :: n, nsteps, nsub, stat, ncell, ncoast, c
    logical :: has_land

    info = 0.0_dp
    resid = 0.0_dp
    ierr = check_coarse_params(pd)
    if (nx < 2 .or. ny < 2 .or. .not. (dx > 0.0_dp) .or. .not. (duration > 0.0_dp)) ierr = 2
    if (ierr /= 0) return
    if (.not. (all(abs(f0) < huge(1.0_dp)) .and. all(abs(f1) < huge(1.0_dp)))) then
       ierr = 7
       return
    end if
    nsteps = max(1, ceiling(duration / pd%dt_dyn - 1.0e-9_dp))
    dt = duration / nsteps
    allocate(f(nx, ny, nforc), taux(nx, ny), tauy(nx, ny), wspd(nx, ny), q(nx, ny, 3), da_new(nx, ny), &
             dv_new(nx, ny), v_removed(nx, ny), ocn(nx, ny), fc(nx, ny), ou(nx, ny), ov(nx, ny), &
             nocean(0:nx, 0:ny), stat=stat)
    if (stat /= 0) then
       ierr = 5
       return
    end if
    ocn = 1.0_dp
    if (present(ocean)) ocn = merge(1.0_dp, 0.0_dp, ocean > 0.5_dp)
    fc = pd%coriolis
    if (present(fcor)) fc = fcor
    if (.not. all(abs(fc) < huge(1.0_dp))) then
       ierr = 2
       return
    end if
    has_land = any(ocn < 0.5_dp)
    ncell = count_ocean(nx, ny, ocn)
    if (has_land) then   ! the mask is authoritative: no ice, no stress on land, no velocity on closed faces
       call land_geometry(nx, ny, ocn, ou, ov, nocean, ncoast, coast)
       where (ocn < 0.5_dp)
          a = 0.0_dp
          vice = 0.0_dp
          vsnow = 0.0_dp
          s1 = 0.0_dp
          s2 = 0.0_dp
       end where
       u = u * ou
       v = v * ov
       do c = 1, ncoast
          if (nocean(coast(1, c), coast(2, c)) == 0) s12(coast(1, c), coast(2, c)) = 0.0_dp
       end do
    end if
    heat_cap = tp%rho_water * tp%cp_water * tp%mixed_layer_depth
    info(info_nsteps) = nsteps

    do n = 1, nsteps
       w = (n - 0.5_dp) / nsteps
       call interp_time(nx, ny, nforc, w, f0, f1, f)
       call air_stress(nx, ny, pd%rho_air, pd%c_air, f(:, :, f_uas), f(:, :, f_vas), taux, tauy, wspd)

       if (pd%dynamics_on) then
          call mevp_solve(nx, ny, dx, dt, pd, a, vice, vsnow, taux, tauy, f(:, :, f_uo), f(:, :, f_vo), ocn, fc, &
                          u, v, s1, s2, s12, nres, resid, alpha_max, ierr, strength)
          if (ierr /= 0) return
          info(info_alpha_max) = max(info(info_alpha_max), alpha_max)
          info(info_courant) = max(info(info_courant), &
                                   max(maxval(abs(u)), maxval(abs(v))) * dt / dx)
       else
          u = 0.0_dp
          v = 0.0_dp
       end if

       if (pd%transport_on .and. pd%dynamics_on) then
          q(:, :, 1) = a
          q(:, :, 2) = vice
          q(:, :, 3) = vsnow
          call advect(nx, ny, dx, dt, u, v, q, 3, pd%limiter, pd%cfl_max, mod(istep0 + n, 2) == 0, nsub, ierr, ocn)
          if (ierr /= 0) return
          info(info_substeps) = info(info_substeps) + nsub
          a = q(:, :, 1)
          vice = q(:, :, 2)
          vsnow = q(:, :, 3)
          call ridge_cap(nx, ny, a)
       end if

       if (pd%thermo_on) then
          call thermo_step(nx, ny, dt, tp, a, vice, vsnow, tsurf, tos, f(:, :, f_tas), f(:, :, f_huss), &
                           f(:, :, f_rsds), f(:, :, f_rlds), f(:, :, f_prsn), wspd, .true., da_new, dv_new, ierr, &
                           ocn)
          if (ierr /= 0) return
          info(info_new_ice) = info(info_new_ice) + sum(dv_new) / ncell
       end if

       call apply_minima(nx, ny, pd%h_min, pd%h_max, pd%a_min, a, vice, vsnow, v_removed, ocn)
       info(info_minima_removed) = info(info_minima_removed) + sum(v_removed) / ncell
       ! thin ice removed by the minima melts: its latent heat comes out of the slab
       if (pd%thermo_on) tos = tos - v_removed * tp%rho_ice * tp%latent_fusion / heat_cap
    end do
    if (nres > 0) then
       info(info_resid_first) = resid(1)
       info(info_resid_last) = resid(min(nres, pd%n_evp))
    end if
  end subroutine coarse_run

end module seaice_coarse
