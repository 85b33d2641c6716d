! seaice_api: the routines Python calls (wrapped by f90wrap as fortran_stub.seaice.seaice_api).
! Every routine returns an error code ierr (0 = ok) instead of stopping; coupling/bridge.py turns codes into
! Python exceptions. Arrays are Fortran-ordered float64, passed in place (no copies).
!
!   advect_tracers(nx, ny, nq, dx, dt, u, v, q, limiter, cfl_max, xfirst, nsub, ierr)   seaice_transport::advect
!   thermo_columns(tp, nx, ny, nf, dt, nsteps, a, vice, vsnow, tsurf, tos, forcing, update_tsurf,
!                  da_new, dv_new, ierr)       nsteps thermodynamic steps with steady forcing(nx,ny,nf)
!   coarse_step(pd, tp, nx, ny, nf, dx, duration, istep0, a, vice, vsnow, tsurf, tos, u, v, s1, s2, s12,
!               f0, f1, nres, resid, ni, info, ocean, fcor, strength, ierr)
!                                  seaice_coarse::coarse_run; s12 is (nx+1, ny+1); ocean (nx,ny) 1 ocean / 0 land,
!                                  fcor (nx,ny) Coriolis parameter at the cell centres (s-1), strength (nx,ny)
!                                  factor on the ice strength P (1: the parameters' P*)
!   deformation_fields(nx, ny, dx, u, v, ocean, div, shear)       seaice_mevp::deformation (s-1), land = 0
!   coarse_param_check(pd, ierr)                           0 if the coarse parameters are usable
module seaice_api
  use seaice_kinds, only: dp
  use seaice_params, only: thermo_params, coarse_params
  use seaice_coarse, only: coarse_run, check_coarse_params, ninfo
  use seaice_mevp, only: deformation
  use seaice_transport, only: advect
  use seaice_thermo, only: thermo_step
  use seaice_forcing, only: f_uas, f_vas, f_tas, f_huss, f_rsds, f_rlds, f_prsn, nforc
  implicit none
contains

  subroutine advect_tracers(nx, ny, nq, dx, dt, u, v, q, limiter, cfl_max, xfirst, nsub, ierr)
    integer, intent(in) :: nx, ny, nq, limiter
    real(dp), intent(in) :: dx, dt, cfl_max
    real(dp), intent(in) :: u(nx, ny), v(nx, ny)
    real(dp), intent(inout) :: q(nx, ny, nq)
    logical, intent(in) :: xfirst
    integer, intent(out) :: nsub, ierr
    call advect(nx, ny, dx, dt, u, v, q, nq, limiter, cfl_max, xfirst, nsub, ierr)
  end subroutine advect_tracers

  subroutine thermo_columns(tp, nx, ny, nf, dt, nsteps, a, vice, vsnow, tsurf, tos, forcing, update_tsurf, &
                            da_new, dv_new, ierr)
    type(thermo_params), intent(in) :: tp
    integer, intent(in) :: nx, ny, nf, nsteps
    real(dp), intent(in) :: dt
    real(dp), intent(inout) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny), tsurf(nx, ny), tos(nx, ny)
    real(dp), intent(in) :: forcing(nx, ny, nf)
    logical, intent(in) :: update_tsurf
    real(dp), intent(inout) :: da_new(nx, ny), dv_new(nx, ny)
    integer, intent(out) :: ierr
    real(dp) :: wspd(nx, ny)
    integer :: n
    ierr = 0
    if (nf /= nforc .or. dt <= 0.0_dp .or. nsteps < 0) then
       ierr = 2
       return
    end if
    wspd = sqrt(forcing(:, :, f_uas)**2 + forcing(:, :, f_vas)**2)
    do n = 1, nsteps
       call thermo_step(nx, ny, dt, tp, a, vice, vsnow, tsurf, tos, forcing(:, :, f_tas), forcing(:, :, f_huss), &
                        forcing(:, :, f_rsds), forcing(:, :, f_rlds), forcing(:, :, f_prsn), wspd, update_tsurf, &
                        da_new, dv_new, ierr)
       if (ierr /= 0) return
    end do
  end subroutine thermo_columns

  subroutine coarse_step(pd, tp, nx, ny, nf, dx, duration, istep0, a, vice, vsnow, tsurf, tos, u, v, s1, s2, &
                         s12, f0, f1, nres, resid, ni, info, ocean, fcor, strength, ierr)
    type(coarse_params), intent(in) :: pd
    type(thermo_params), intent(in) :: tp
    integer, intent(in) :: nx, ny, nf, istep0, nres, ni
    real(dp), intent(in) :: dx, duration
    real(dp), intent(inout) :: a(nx, ny), vice(nx, ny), vsnow(nx, ny), tsurf(nx, ny), tos(nx, ny), &
                               u(nx, ny), v(nx, ny), s1(nx, ny), s2(nx, ny), s12(nx + 1, ny + 1)
    real(dp), intent(in) :: f0(nx, ny, nf), f1(nx, ny, nf)
    real(dp), intent(inout) :: resid(nres), info(ni)
    real(dp), intent(in) :: ocean(nx, ny), fcor(nx, ny), strength(nx, ny)
    integer, intent(out) :: ierr
    if (nf /= nforc .or. ni /= ninfo) then
       ierr = 2
       return
    end if
    call coarse_run(pd, tp, nx, ny, dx, duration, istep0, a, vice, vsnow, tsurf, tos, u, v, s1, s2, s12, &
                    f0, f1, nres, resid, info, ierr, ocean, fcor, strength)
  end subroutine coarse_step

  subroutine deformation_fields(nx, ny, dx, u, v, ocean, div, shear)
    integer, intent(in) :: nx, ny
    real(dp), intent(in) :: dx, u(nx, ny), v(nx, ny), ocean(nx, ny)
    real(dp), intent(inout) :: div(nx, ny), shear(nx, ny)
    call deformation(nx, ny, dx, u, v, div, shear, ocean)
  end subroutine deformation_fields

  subroutine coarse_param_check(pd, ierr)
    type(coarse_params), intent(in) :: pd
    integer, intent(out) :: ierr
    ierr = check_coarse_params(pd)
  end subroutine coarse_param_check

end module seaice_api
