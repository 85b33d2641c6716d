! Parameters of the BBM "truth" dynamics (physics.md §2.2). Filled from Python (fortran_stub/truth_config.py).
! Stresses are vertically integrated (N m-1), so elasticity, cohesion and compressive strength are multiplied
! by the ice volume per unit area V (m) inside the kernel, as nextsimDG does.
module seaice_truth_params
  use seaice_kinds, only: dp
  implicit none
  public

  type, public :: truth_params
     ! densities (kg m-3) and drag
     real(dp) :: rho_ice = 900.0_dp
     real(dp) :: rho_snow = 330.0_dp
     real(dp) :: rho_air = 1.3_dp
     real(dp) :: rho_water = 1026.0_dp
     real(dp) :: air_drag = 1.5e-3_dp        ! C_a (1); coarse model uses 1.2e-3 (parameter bias, §2.1.6)
     real(dp) :: water_drag = 5.5e-3_dp      ! C_w (1)
     real(dp) :: turning_angle = 0.0_dp      ! theta_w (degrees), anticlockwise
     real(dp) :: coriolis = 1.46e-4_dp       ! f (s-1)
     ! BBM rheology
     real(dp) :: young = 5.96e8_dp           ! E (Pa), undamaged Young's modulus before the reduction knob
     real(dp) :: e_reduction = 16.0_dp       ! k: E is divided by k, the elastic substep may be k**0.5 longer
     real(dp) :: poisson = 1.0_dp / 3.0_dp   ! nu (1)
     real(dp) :: lambda0 = 1.0e7_dp          ! undamaged viscous relaxation time (s)
     real(dp) :: alpha = 5.0_dp              ! relaxation exponent (1)
     real(dp) :: compaction = 20.0_dp        ! C in exp(-C(1-A)) (1)
     real(dp) :: p0 = 1.0e4_dp               ! P0 of the pressure cap P_max = P0 V**p_exp exp(-C(1-A)) (N m-1 per m**p_exp)
     real(dp) :: p_exp = 1.5_dp              ! exponent of V in P_max (1)
     real(dp) :: friction = 0.7_dp           ! mu = tan(phi) of the Mohr-Coulomb envelope (1)
     real(dp) :: n_max = 1.0e10_dp           ! compressive strength at lab scale (Pa), scaled like cohesion
     real(dp) :: scale_coef = 0.0_dp         ! (l_lab/dx)**0.5, set from Python for the grid (1)
     real(dp) :: healing_time = 15.0_dp * 86400.0_dp  ! t_h (s)
     ! numerics
     real(dp) :: cfl_elastic = 0.6_dp        ! substep = cfl * dx / c_p with c_p the P-wave speed (1)
     real(dp) :: dt_adv = 3600.0_dp          ! advective (transport/thermodynamics) step (s)
     real(dp) :: h_min_dyn = 0.01_dp         ! faces with less ice volume (m) are set to rest
     real(dp) :: d_min = 1.0e-12_dp          ! floor of the damage variable (d = 1 undamaged)
     integer :: limiter = 3                  ! transport limiter: 0 donor cell, 1 minmod, 2 van Leer, 3 MC
     real(dp) :: cfl_max = 0.5_dp            ! Courant number per transport substep
     real(dp) :: h_min = 0.01_dp             ! ice thinner than this (m, V/A) is removed (with thermodynamics on)
     real(dp) :: h_max = 30.0_dp             ! largest thickness of partly covered cells: A >= V/h_max (m)
     real(dp) :: a_min = 1.0e-12_dp          ! minimum concentration (1)
     logical :: dynamics_on = .true.         ! BBM momentum + stresses; false keeps u = v = 0
     logical :: transport_on = .true.        ! advection of A, V, Vs, damage and stresses
     logical :: thermo_on = .true.           ! thermodynamics (shared seaice_thermo), new ice, ice minima
  end type truth_params
end module seaice_truth_params
