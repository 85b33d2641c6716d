! seaice_thermo: zero-layer (Semtner 1976) thermodynamics with Hibler lateral growth/melt and a slab mixed layer,
! after nextsimDG ThermoIce0 / IceGrowth / HiblerSpread / FiniteElementFluxes / SlabOcean (physics.md §1.6).
!
!   call thermo_step(nx, ny, dt, tp, a, vice, vsnow, tsurf, tos, tas, huss, rsds, rlds, prsn, wspd, &
!                    update_tsurf, da_new, dv_new, ierr [, ocean])
!     dt            time step (s); tp type(thermo_params) (seaice_params)
!     a, vice, vsnow   inout (nx,ny): concentration (1), ice and snow volume per cell area (m)
!     tsurf         inout (nx,ny): ice/snow surface temperature (degC)
!     tos           inout (nx,ny): slab mixed-layer temperature (degC)
!     tas (K), huss (kg kg-1), rsds, rlds (W m-2), prsn (kg m-2 s-1), wspd (m s-1, 10 m wind speed): (nx,ny) at centres
!     update_tsurf  .false. holds tsurf fixed (prescribed surface temperature, e.g. the Stefan-law test)
!     da_new, dv_new   out (nx,ny): concentration and volume (m) of new ice formed in open water this step
!                   (the truth model heals damage with da_new: new ice is undamaged)
!     ierr          out: 0 ok, 4 non-finite result
!     ocean         optional (nx,ny): 1 ocean, 0 land; land cells are skipped (state untouched, da_new = dv_new = 0)
!
! Sign convention: fluxes are positive upward (a loss for the surface). The ocean below the ice is at t_freeze.
! Per cell and step: surface temperature by one Newton step capped at the melting point; surplus energy melts
! snow then ice at the top; bottom growth/melt from conduction minus the slab's heat; open-water flux and
! penetrating short wave change the slab; cooling below freezing forms new ice (area dV/h0, Hibler); vertical
! melt shrinks the area by phi_M A dh/h; snowfall on ice; flooding of snow below the waterline into ice.
! Ice/snow volume that vanishes returns its latent heat to the slab, so energy is closed.
module seaice_thermo
  use seaice_kinds, only: dp
  use seaice_constants, only: t_kelvin, stefan_boltzmann
  use seaice_params, only: thermo_params
  implicit none
  private
  public :: thermo_step, thermo_column, ice_surface_flux, qsat

contains

  subroutine thermo_step(nx, ny, dt, tp, a, vice, vsnow, tsurf, tos, tas, huss, rsds, rlds, prsn, wspd, &
                         update_tsurf, da_new, dv_new, ierr, ocean)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dt
    type(thermo_params), intent(in) :: tp
    real(dp), intent(inout) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny), tsurf(nx, ny), tos(nx, ny)
    real(dp), intent(in) :: tas(nx, ny), huss(nx, ny), rsds(nx, ny), rlds(nx, ny), prsn(nx, ny), wspd(nx, ny)
    logical, intent(in) :: update_tsurf
    real(dp), intent(out) :: da_new(nx, ny), dv_new(nx, ny)
    integer, intent(out) :: ierr
    real(dp), intent(in), optional :: ocean(nx, ny)
    integer :: i, j
    ierr = 0
    do j = 1, ny
       do i = 1, nx
          if (present(ocean)) then
             if (ocean(i, j) <= 0.5_dp) then
                da_new(i, j) = 0.0_dp
                dv_new(i, j) = 0.0_dp
                cycle
             end if
          end if
          call thermo_column(tp, dt, update_tsurf, tas(i, j), huss(i, j), rsds(i, j), rlds(i, j), prsn(i, j), &
                             wspd(i, j), a(i, j), vice(i, j), vsnow(i, j), tsurf(i, j), tos(i, j), &
                             da_new(i, j), dv_new(i, j))
       end do
    end do
    if (.not. (all(abs(a) < huge(1.0_dp)) .and. all(abs(vice) < huge(1.0_dp)) .and. &
               all(abs(tsurf) < huge(1.0_dp)) .and. all(abs(tos) < huge(1.0_dp)))) ierr = 4
  end subroutine thermo_step

  ! One grid cell, one step. Volumes are per cell area; h, hs per ice-covered area.
  pure subroutine thermo_column(tp, dt, update_tsurf, tas, huss, rsds, rlds, prsn, wspd, a, vice, vsnow, ts, tos, &
                                da_new, dv_new)
    type(thermo_params), intent(in) :: tp
    real(dp), intent(in) :: dt, tas, huss, rsds, rlds, prsn, wspd
    logical, intent(in) :: update_tsurf
    real(dp), intent(inout) :: a, vice, vsnow, ts, tos
    real(dp), intent(out) :: da_new, dv_new
    real(dp) :: ta, tf, rhol_i, rhol_s, heat_cap, heat_ml, a0, h, hs, h_old, tm, kcond, fs, alb, sw_abs, &
                sw_pen, sw_surf, q_ia, dq_ia, q_c, e_top, dmelt, q_io, dh, q_ow, tos_new, dvn, a1, v_new, vs_new, &
                draft, lat_coef_i

    ta = tas - t_kelvin
    tf = tp%t_freeze
    rhol_i = tp%rho_ice * tp%latent_fusion
    rhol_s = tp%rho_snow * tp%latent_fusion
    heat_cap = tp%rho_water * tp%cp_water * tp%mixed_layer_depth   ! J m-2 K-1 of the slab
    heat_ml = 0.0_dp                                                 ! J m-2 (cell mean) into the slab
    a0 = max(a, 0.0_dp)
    if (a0 > 0.0_dp .and. vice > 0.0_dp) then
       h = vice / a0
       hs = max(vsnow, 0.0_dp) / a0
    else
       h = 0.0_dp
       hs = 0.0_dp
    end if
    h_old = h
    lat_coef_i = 0.0_dp
    if (tp%latent_heat_on) lat_coef_i = tp%rho_air * tp%latent_sublimation * tp%ch_ice * wspd

    if (h > 0.0_dp) then
       tm = -tp%mu_salinity * tp%ice_salinity       ! melting point of bare ice
       if (hs > 0.0_dp) tm = 0.0_dp
       kcond = tp%semtner_gamma * tp%k_ice * tp%k_snow / (tp%k_snow * h + tp%k_ice * hs)
       ! CCSM3 albedo, snow-cover fraction fs; only bare ice lets short wave through
       fs = hs / (hs + 0.02_dp)
       alb = fs * (0.8256_dp - max(0.0_dp, 0.124_dp * (ts + 1.0_dp))) + &
             (1.0_dp - fs) * (0.538_dp - max(0.0_dp, 0.075_dp * (ts + 1.0_dp)))
       sw_abs = (1.0_dp - alb) * rsds
       sw_pen = sw_abs * (1.0_dp - fs) * tp%i0
       sw_surf = sw_abs - sw_pen
       if (update_tsurf) then
          call ice_surface_flux(tp, ts, ta, huss, rlds, sw_surf, wspd, lat_coef_i, q_ia, dq_ia)
          ts = ts + (kcond * (tf - ts) - q_ia) / (kcond + dq_ia)
          ts = min(ts, tm)
       end if
       call ice_surface_flux(tp, ts, ta, huss, rlds, sw_surf, wspd, lat_coef_i, q_ia, dq_ia)
       q_c = kcond * (tf - ts)                      ! upward conduction (W m-2)
       if (ts >= tm) then                           ! surface at melting point: surplus melts snow, then ice
          e_top = max(q_c - q_ia, 0.0_dp) * dt
          dmelt = min(hs, e_top / rhol_s)
          hs = hs - dmelt
          e_top = e_top - dmelt * rhol_s
          dmelt = min(h, e_top / rhol_i)
          h = h - dmelt
          e_top = e_top - dmelt * rhol_i
          heat_ml = heat_ml + a0 * e_top
       end if
       ! bottom: the slab gives up its heat above freezing through the ice-covered fraction
       q_io = max(tos - tf, 0.0_dp) * heat_cap / dt
       dh = (q_c - q_io) * dt / rhol_i
       if (h + dh < 0.0_dp) then
          heat_ml = heat_ml - a0 * (h + dh) * rhol_i   ! heat left after the ice is gone
          dh = -h
       end if
       h = h + dh
       heat_ml = heat_ml + a0 * (sw_pen - q_io) * dt
       if (h <= 0.0_dp) then                        ! snow left without ice melts into the slab
          heat_ml = heat_ml - a0 * hs * rhol_s
          h = 0.0_dp
          hs = 0.0_dp
       end if
    end if

    ! open water
    call water_surface_flux(tp, tos, ta, huss, rlds, rsds, wspd, q_ow)
    heat_ml = heat_ml - (1.0_dp - a0) * q_ow * dt
    tos_new = tos + heat_ml / heat_cap + (tp%sst_restore_target - tos) * dt / tp%sst_restore_time
    dvn = 0.0_dp
    if (tos_new < tf) then                          ! cooling below freezing forms new ice
       dvn = (tf - tos_new) * heat_cap / rhol_i
       tos_new = tf
    end if
    tos = tos_new

    ! lateral melt (Hibler): area shrinks in proportion to the relative thinning; volume is A0 h
    a1 = a0
    if (h <= 0.0_dp) then
       a1 = 0.0_dp
    else if (h < h_old) then
       a1 = max(a0 * (1.0_dp + tp%phi_melt * (h - h_old) / h_old), 0.0_dp)
    end if
    ! lateral growth: new ice covers dV/h0 of the open water
    da_new = 0.0_dp
    if (dvn > 0.0_dp) da_new = max(min(dvn / tp%h0_lateral, 1.0_dp - a1), 0.0_dp)
    v_new = a0 * h + dvn
    vs_new = a0 * hs
    a = a1 + da_new
    if (a0 <= 0.0_dp .or. h_old <= 0.0_dp) ts = tf   ! fresh ice starts at the freezing point
    if (a > 0.0_dp .and. v_new > 0.0_dp) then
       vs_new = vs_new + a * max(prsn, 0.0_dp) * dt / tp%rho_snow
       h = v_new / a
       hs = vs_new / a
       draft = (tp%rho_ice * h + tp%rho_snow * hs) / tp%rho_water
       if (draft > h) then                          ! flooding: snow below the waterline becomes ice
          hs = hs - (draft - h) * tp%rho_ice / tp%rho_snow
          h = draft
       end if
       vice = a * h
       vsnow = a * max(hs, 0.0_dp)
    else
       a = 0.0_dp
       vice = 0.0_dp
       vsnow = 0.0_dp
       ts = tf
    end if
    dv_new = dvn
  end subroutine thermo_column

  ! Upward atmosphere-ice flux q (W m-2) at surface temperature ts (degC) and its derivative dq/dts.
  pure subroutine ice_surface_flux(tp, ts, ta, huss, rlds, sw_surf, wspd, lat_coef, q, dq)
    type(thermo_params), intent(in) :: tp
    real(dp), intent(in) :: ts, ta, huss, rlds, sw_surf, wspd, lat_coef
    real(dp), intent(out) :: q, dq
    real(dp) :: tk, sens, qs, dqs
    tk = ts + t_kelvin
    sens = tp%rho_air * tp%cp_air * tp%ch_ice * wspd
    call qsat(ts, tp%air_pressure, .true., qs, dqs)
    q = tp%emissivity * stefan_boltzmann * tk**4 - rlds - sw_surf + sens * (ts - ta) + lat_coef * (qs - huss)
    dq = 4.0_dp * tp%emissivity * stefan_boltzmann * tk**3 + sens + lat_coef * dqs
  end subroutine ice_surface_flux

  ! Upward atmosphere-ocean flux (W m-2) of open water at temperature tw (degC).
  pure subroutine water_surface_flux(tp, tw, ta, huss, rlds, rsds, wspd, q)
    type(thermo_params), intent(in) :: tp
    real(dp), intent(in) :: tw, ta, huss, rlds, rsds, wspd
    real(dp), intent(out) :: q
    real(dp) :: qs, dqs, lat
    call qsat(tw, tp%air_pressure, .false., qs, dqs)
    lat = 0.0_dp
    if (tp%latent_heat_on) lat = tp%rho_air * tp%latent_vaporisation * tp%ch_water * wspd * (qs - huss)
    q = tp%emissivity * stefan_boltzmann * (tw + t_kelvin)**4 - rlds - (1.0_dp - tp%albedo_water) * rsds + &
        tp%rho_air * tp%cp_air * tp%ch_water * wspd * (tw - ta) + lat
  end subroutine water_surface_flux

  ! Saturation specific humidity qs (kg kg-1) over ice or water at t (degC), pressure p (Pa), and dqs/dt
  ! (Buck 1981 vapour pressure).
  pure subroutine qsat(t, p, over_ice, qs, dqs)
    real(dp), intent(in) :: t, p
    logical, intent(in) :: over_ice
    real(dp), intent(out) :: qs, dqs
    real(dp) :: e0, b, c, e, dedt
    if (over_ice) then
       e0 = 611.15_dp; b = 22.452_dp; c = 272.55_dp
    else
       e0 = 611.21_dp; b = 17.502_dp; c = 240.97_dp
    end if
    e = e0 * exp(b * t / (c + t))
    dedt = e * b * c / (c + t)**2
    qs = 0.622_dp * e / (p - 0.378_dp * e)
    dqs = 0.622_dp * p / (p - 0.378_dp * e)**2 * dedt
  end subroutine qsat

end module seaice_thermo
