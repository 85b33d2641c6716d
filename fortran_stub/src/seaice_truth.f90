! Wrapped API of the BBM truth model. Python (coupling/truth.py) owns every array in Fortran order and passes it
! here; nothing is copied. Corner stress s12 is passed as (nx+1, ny+1): element (1,1) is the south-west domain
! corner, element (i+1, j+1) the north-east corner of cell (i, j).
! Land: ocean(nx, ny) 1 = ocean, 0 = land (all 1 for the closed box); fcor(nx, ny) the Coriolis parameter at the
! cell centres (s-1; constant p%coriolis for the box). See seaice_bbm and docs/physics-land.md.
module seaice_truth
  use seaice_kinds, only: dp
  use seaice_truth_params, only: truth_params
  use seaice_params, only: thermo_params
  use seaice_bbm, only: bbm_substep_count, bbm_dynamics, bbm_heal, bbm_new_ice_undamaged, corner_to_centre, &
                        add_centre_to_corner
  use seaice_transport, only: advect
  use seaice_thermo, only: thermo_step
  use seaice_minima, only: ridge_cap, apply_minima
  use seaice_forcing, only: n_forcing => nforc, f_uas, f_vas, f_tas, f_huss, f_rsds, f_rlds, f_prsn, f_uo, f_vo
  use seaice_grid, only: land_geometry, count_ocean
  implicit none
  !> entries of the info array returned by truth_step
  integer, parameter :: n_info = 6

contains

  !> Number of elastic substeps the truth uses per advective step dt (s) at cell size dx (m).
  subroutine truth_substeps(p, dx, dt, nsub)
    type(truth_params), intent(in) :: p
    real(dp), intent(in) :: dx, dt
    integer, intent(out) :: nsub
    nsub = bbm_substep_count(p, dx, dt)
  end subroutine truth_substeps

  !> BBM dynamics only (no transport, no thermodynamics) over dt (s) with fixed A, V, Vs and forcing.
  !> ubar, vbar return the substep-mean face velocities (m s-1); nsub the number of substeps used.
  subroutine truth_dynamics(p, nx, ny, dx, dt, a, vol, vsn, coh, uas, vas, uo, vo, ocean, fcor, &
                            u, v, s11, s22, s12, dmg, ubar, vbar, nsub)
    type(truth_params), intent(in) :: p
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dx, dt
    real(dp), intent(in) :: a(nx, ny), vol(nx, ny), vsn(nx, ny), coh(nx, ny)
    real(dp), intent(in) :: uas(nx, ny), vas(nx, ny), uo(nx, ny), vo(nx, ny), ocean(nx, ny), fcor(nx, ny)
    real(dp), intent(inout) :: u(nx, ny), v(nx, ny), s11(nx, ny), s22(nx, ny), s12(nx + 1, ny + 1), dmg(nx, ny)
    real(dp), intent(inout) :: ubar(nx, ny), vbar(nx, ny)
    integer, intent(out) :: nsub
    nsub = bbm_substep_count(p, dx, dt)
    call bbm_dynamics(p, nx, ny, dx, dt, nsub, a, vol, vsn, coh, uas, vas, uo, vo, ocean, fcor, &
                      u, v, s11, s22, s12, dmg, ubar, vbar)
  end subroutine truth_dynamics
  !> Advance the truth by dt_total (s) (12 h for the product): n_adv advective steps of at most p%dt_adv, each
  !> = BBM dynamics (nsub elastic substeps) -> transport of A, V, Vs, A*d and stresses with the substep-mean
  !> velocity -> ridging cap A <= 1 -> thermodynamics (new ice undamaged) and ice minima -> healing.
  !> Forcing f0, f1 (nx, ny, n_forcing) is given at the two ends of the window and interpolated linearly to the
  !> middle of each advective step. ubar, vbar return the mean face velocity over the window (m s-1).
  !> Land: on entry land cells are set to hold no ice (and no stress, d = 1) and closed faces to rest; then
  !> nothing crosses a face touching land, and thermodynamics and minima run over the ocean only.
  !> info: 1 advective steps, 2 elastic substeps per advective step, 3 most transport substeps in one step,
  !>       4 max |u|,|v| (m s-1), 5 min damage, 6 total new-ice volume (m, mean over the ocean cells).
  !> ierr: 0 ok, 2 bad argument, 4 non-finite thermodynamics, 6 transport failure, 7 non-finite dynamics.
  subroutine truth_step(p, tp, nx, ny, dx, dt_total, a, vol, vsn, tsurf, tos, u, v, s11, s22, s12, dmg, coh, &
                        f0, f1, ocean, fcor, ubar, vbar, info, ierr)
    type(truth_params), intent(in) :: p
    type(thermo_params), intent(in) :: tp
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dx, dt_total
    real(dp), intent(inout) :: a(nx, ny), vol(nx, ny), vsn(nx, ny), tsurf(nx, ny), tos(nx, ny)
    real(dp), intent(inout) :: u(nx, ny), v(nx, ny), s11(nx, ny), s22(nx, ny), s12(nx + 1, ny + 1), dmg(nx, ny)
    real(dp), intent(in) :: coh(nx, ny), f0(nx, ny, n_forcing), f1(nx, ny, n_forcing), ocean(nx, ny), fcor(nx, ny)
    real(dp), intent(inout) :: ubar(nx, ny), vbar(nx, ny), info(n_info)
    integer, intent(out) :: ierr

    real(dp), allocatable :: fm(:,:,:), ua(:,:), va(:,:), q(:,:,:), s12t(:,:), wspd(:,:), da_new(:,:), dv_new(:,:)
    real(dp), allocatable :: ou(:,:), ov(:,:)
    integer, allocatable :: nocean(:,:), coast(:,:)
    real(dp) :: dta, w
    integer :: n_adv, nsub, n, ntr, ncell, ncoast, c

    ierr = 0
    info = 0.0_dp
    if (nx < 2 .or. ny < 2 .or. dx <= 0.0_dp .or. dt_total <= 0.0_dp .or. p%dt_adv <= 0.0_dp) then
      ierr = 2
      return
    end if
    n_adv = max(1, ceiling(dt_total / p%dt_adv - 1.0e-9_dp))
    dta = dt_total / n_adv
    nsub = bbm_substep_count(p, dx, dta)
    allocate(fm(nx, ny, n_forcing), ua(nx, ny), va(nx, ny), q(nx, ny, 7), s12t(nx, ny), wspd(nx, ny), &
             da_new(nx, ny), dv_new(nx, ny))
    ncell = count_ocean(nx, ny, ocean)
    if (any(ocean <= 0.5_dp)) then   ! the mask is authoritative: no ice, stress or damage on land, rest on land faces
      allocate(ou(nx, ny), ov(nx, ny), nocean(0:nx, 0:ny))
      call land_geometry(nx, ny, ocean, ou, ov, nocean, ncoast, coast)
      where (ocean <= 0.5_dp)
        a = 0.0_dp
        vol = 0.0_dp
        vsn = 0.0_dp
        s11 = 0.0_dp
        s22 = 0.0_dp
        dmg = 1.0_dp
      end where
      u = u * ou
      v = v * ov
      do c = 1, ncoast
        if (nocean(coast(1, c), coast(2, c)) == 0) s12(coast(1, c) + 1, coast(2, c) + 1) = 0.0_dp
      end do
    end if
    ubar = 0.0_dp
    vbar = 0.0_dp
    info(1) = n_adv
    info(2) = nsub
    do n = 1, n_adv
      w = (n - 0.5_dp) * dta / dt_total
      fm = (1.0_dp - w) * f0 + w * f1

      if (p%dynamics_on) then
        call bbm_dynamics(p, nx, ny, dx, dta, nsub, a, vol, vsn, coh, fm(:,:,f_uas), fm(:,:,f_vas), &
                          fm(:,:,f_uo), fm(:,:,f_vo), ocean, fcor, u, v, s11, s22, s12, dmg, ua, va)
        if (.not. (all(abs(ua) < huge(1.0_dp)) .and. all(abs(va) < huge(1.0_dp)) .and. &
                   all(abs(s11) < huge(1.0_dp)) .and. all(abs(s12) < huge(1.0_dp)))) then
          ierr = 7
          return
        end if
      else
        u = 0.0_dp
        v = 0.0_dp
        ua = 0.0_dp
        va = 0.0_dp
      end if
      ubar = ubar + ua / n_adv
      vbar = vbar + va / n_adv

      if (p%transport_on .and. p%dynamics_on) then
        ! intensive damage travels as the extensive A*d; vertically integrated stresses are extensive already;
        ! the corner shear travels as its T-point mean and only the increment is returned to the corners
        call corner_to_centre(nx, ny, s12, s12t)
        q(:,:,1) = a
        q(:,:,2) = vol
        q(:,:,3) = vsn
        q(:,:,4) = a * dmg
        q(:,:,5) = s11
        q(:,:,6) = s22
        q(:,:,7) = s12t
        call advect(nx, ny, dx, dta, ua, va, q, 7, p%limiter, p%cfl_max, mod(n, 2) == 1, ntr, ierr, ocean)
        if (ierr /= 0) then
          ierr = 6
          return
        end if
        info(3) = max(info(3), real(ntr, dp))
        a = max(q(:,:,1), 0.0_dp)
        vol = max(q(:,:,2), 0.0_dp)
        vsn = max(q(:,:,3), 0.0_dp)
        where (a > p%a_min)
          dmg = min(1.0_dp, max(p%d_min, q(:,:,4) / a))
        elsewhere
          dmg = 1.0_dp
        end where
        s11 = q(:,:,5)
        s22 = q(:,:,6)
        call add_centre_to_corner(nx, ny, q(:,:,7) - s12t, s12)
        call ridge_cap(nx, ny, a)   ! ridging: area capped, volume kept
      end if

      if (p%thermo_on) then
        wspd = sqrt(fm(:,:,f_uas)**2 + fm(:,:,f_vas)**2)
        call thermo_step(nx, ny, dta, tp, a, vol, vsn, tsurf, tos, fm(:,:,f_tas), fm(:,:,f_huss), &
                         fm(:,:,f_rsds), fm(:,:,f_rlds), fm(:,:,f_prsn), wspd, .true., da_new, dv_new, ierr, &
                         ocean)
        if (ierr /= 0) then
          ierr = 4
          return
        end if
        info(6) = info(6) + sum(dv_new) / ncell
        call bbm_new_ice_undamaged(nx, ny, a, da_new, dmg)
        ! minima: thin or sparse ice is removed (its stress too, below); melting it cools the slab
        call apply_minima(nx, ny, p%h_min, p%h_max, p%a_min, a, vol, vsn, dv_new, ocean)
        tos = tos - dv_new * tp%rho_ice * tp%latent_fusion / (tp%rho_water * tp%cp_water * tp%mixed_layer_depth)
      end if
      where (a <= 0.0_dp)
        dmg = 1.0_dp
        s11 = 0.0_dp
        s22 = 0.0_dp
      end where
      call bbm_heal(p, nx, ny, dta, dmg)
    end do
    info(4) = max(maxval(abs(u)), maxval(abs(v)))
    info(5) = minval(dmg)
  end subroutine truth_step
end module seaice_truth
