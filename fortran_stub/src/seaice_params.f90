! seaice_params: the tunable parameters, as derived types wrapped by f90wrap.
!
!   type(thermo_params)  zero-layer thermodynamics + slab mixed layer (shared by the coarse and the truth model)
!   type(coarse_params)  coarse mEVP-VP model: time stepping, momentum, rheology, transport, ice minima
!
! Defaults are the values of physics.md (benchmark column of §1.2-1.3, §1.6). Python sets every component from the
! pydantic models of fortran_stub/config.py (same names); the Fortran defaults only matter for Fortran-side callers.
! Integer codes: limiter 0 = donor cell (upwind), 1 = minmod, 2 = van Leer, 3 = monotonized central (MC).
module seaice_params
  use seaice_kinds, only: dp
  implicit none

  type, public :: thermo_params
     real(dp) :: rho_ice = 917.0_dp              ! ice density for latent heat (kg m-3)
     real(dp) :: rho_snow = 330.0_dp             ! snow density (kg m-3)
     real(dp) :: rho_water = 1026.0_dp           ! sea-water density (kg m-3)
     real(dp) :: rho_air = 1.3_dp                ! air density (kg m-3)
     real(dp) :: k_ice = 2.0334_dp               ! ice conductivity (W m-1 K-1)
     real(dp) :: k_snow = 0.3096_dp              ! snow conductivity (W m-1 K-1)
     real(dp) :: semtner_gamma = 1.065_dp        ! Semtner conductivity correction (1)
     real(dp) :: emissivity = 0.996_dp           ! surface long-wave emissivity (1)
     real(dp) :: i0 = 0.17_dp                    ! penetrating short-wave fraction of bare ice (1)
     real(dp) :: ch_ice = 1.3e-3_dp              ! bulk heat-transfer coefficient over ice (1)
     real(dp) :: ch_water = 0.83e-3_dp           ! bulk heat-transfer coefficient over water (1)
     real(dp) :: albedo_water = 0.07_dp          ! open-water albedo (1)
     real(dp) :: h0_lateral = 0.25_dp            ! Hibler lead-closing thickness h0 (m)
     real(dp) :: phi_melt = 0.5_dp               ! Hibler lateral-melt factor phi_M (1)
     real(dp) :: t_freeze = -1.8_dp              ! sea-water freezing point (degC)
     real(dp) :: mu_salinity = 0.055_dp          ! liquidus slope (K psu-1)
     real(dp) :: ice_salinity = 5.0_dp           ! bulk ice salinity (psu)
     real(dp) :: latent_fusion = 333.55e3_dp     ! J kg-1
     real(dp) :: latent_sublimation = 2.834e6_dp ! J kg-1
     real(dp) :: latent_vaporisation = 2.501e6_dp ! J kg-1
     real(dp) :: cp_air = 1004.64_dp             ! J kg-1 K-1
     real(dp) :: cp_water = 4186.84_dp           ! J kg-1 K-1
     real(dp) :: mixed_layer_depth = 10.0_dp     ! slab depth h_ml (m)
     real(dp) :: sst_restore_time = 2592000.0_dp ! slab restoring time (s), 30 days
     real(dp) :: sst_restore_target = -1.8_dp    ! slab restoring temperature (degC)
     real(dp) :: air_pressure = 101325.0_dp      ! surface pressure for saturation humidity (Pa)
     logical :: latent_heat_on = .true.          ! include the bulk latent heat flux
  end type thermo_params

  type, public :: coarse_params
     real(dp) :: dt_dyn = 3600.0_dp              ! dynamics/thermodynamics time step (s), upper bound
     integer :: n_evp = 200                      ! mEVP iterations per dynamics step
     logical :: aevp = .true.                    ! adaptive alpha = beta (Kimmritz 2016) instead of alpha_fixed
     real(dp) :: alpha_fixed = 300.0_dp          ! fixed alpha = beta when aevp is false
     real(dp) :: aevp_cstar = 4.0_dp             ! aEVP c* (MITgcm SEAICEaEVPcStar)
     real(dp) :: aevp_alpha_min = 5.0_dp         ! aEVP minimum alpha
     logical :: dynamics_on = .true.             ! momentum solve; false keeps u = v = 0
     logical :: rheology_on = .true.             ! internal stress; false is free drift
     logical :: transport_on = .true.            ! advection of A, V, Vs
     logical :: thermo_on = .true.               ! zero-layer thermodynamics + slab mixed layer
     real(dp) :: rho_ice = 900.0_dp              ! ice density for the ice mass in the momentum equation (kg m-3)
     real(dp) :: rho_snow = 330.0_dp             ! kg m-3
     real(dp) :: rho_air = 1.3_dp                ! kg m-3
     real(dp) :: rho_water = 1026.0_dp           ! kg m-3
     real(dp) :: c_air = 1.2e-3_dp               ! air-ice drag coefficient (1)
     real(dp) :: c_water = 5.5e-3_dp             ! ice-ocean drag coefficient (1)
     real(dp) :: turning_angle = 0.0_dp          ! ocean turning angle theta_w (degrees, anticlockwise)
     real(dp) :: coriolis = 1.46e-4_dp           ! f (s-1)
     real(dp) :: p_star = 27.5e3_dp              ! ice strength P* (N m-2)
     real(dp) :: c_star = 20.0_dp                ! strength concentration exponent C* (1)
     real(dp) :: ecc = 2.0_dp                    ! yield-ellipse aspect ratio e (1)
     real(dp) :: delta_min = 2.0e-9_dp           ! Delta regularisation (s-1)
     logical :: replacement_pressure = .true.    ! P_R = P Delta/Delta* instead of P
     integer :: limiter = 3                      ! transport limiter code (see header)
     real(dp) :: cfl_max = 0.5_dp                ! Courant number per transport substep
     real(dp) :: h_min = 0.01_dp                 ! minimum ice thickness h = V/A (m)
     real(dp) :: h_max = 30.0_dp                 ! largest thickness of partly covered cells: A >= V/h_max (m)
     real(dp) :: a_min = 1.0e-12_dp              ! minimum concentration (1)
  end type coarse_params
end module seaice_params
