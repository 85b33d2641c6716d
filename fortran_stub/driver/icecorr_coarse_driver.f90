! icecorr_coarse_driver: a standalone Fortran program (no Python in the physics process) that runs the built-in
! coarse model for its ensemble members and calls the icecorr client every 12 h step. It reproduces what a Python
! physics rank of `icecorr couple` does, bit for bit, so a run against `icecorr serve` equals the Python-driven run.
!
!   mpiexec -n P icecorr_coarse_driver KIT_DIR [OVERRIDES.nml] : -n 1 icecorr serve CONFIG.yaml
!
! KIT_DIR comes from `icecorr fortran-kit CONFIG.yaml --out KIT_DIR` (see icecorr_kit.f90). Layout: the P physics
! ranks form P / (tiles_y·tiles_x) tile groups; the window·member slots are spread over the groups in contiguous
! blocks. The coarse model is not domain-decomposed, so every rank of a group runs its group's members on the whole
! grid (replicated) and exchanges only its own tile with the ML side; after each correction the group rebuilds the
! full corrected fields with MPI_Allgatherv. The ML side cannot tell this from a truly decomposed model.
! Prints one timing line per rank: physics and client seconds per step and their ratio.
program icecorr_coarse_driver
  use mpi_f08
  use, intrinsic :: iso_fortran_env, only: real64, error_unit, output_unit
  use icecorr_client
  use icecorr_kit
  use icecorr_driver_fields
  use seaice_coarse, only: coarse_run, ninfo, info_nsteps
  use, intrinsic :: iso_c_binding, only: c_int
  implicit none

  interface
     integer(c_int) function c_raise(sig) bind(C, name="raise")
       import :: c_int
       integer(c_int), value :: sig
     end function c_raise
  end interface

  type(icecorr_client_t) :: client
  type(kit_t) :: kit
  type(MPI_Comm) :: model, group
  character(len=4096) :: dir, extra
  character(len=512) :: msg
  integer :: ierr, p, n_phys, n_tiles, n_groups, g, t, first_slot, n_slots, s, w, step, k, nx, ny, nres
  integer :: tile(4), var_units(n_fields)
  integer, allocatable :: istep0(:), counts(:), displs(:), tiles(:, :)
  real(real64), allocatable :: st(:, :, :, :), s12(:, :, :), before(:, :, :, :), after(:, :, :, :), &
                               forecast(:, :, :, :), tb(:, :, :, :), ta(:, :, :, :), gathered(:), resid(:)
  real(real64) :: info(ninfo), t0, t_physics, t_apply

  call MPI_Init()
  dir = ''
  extra = ''
  if (command_argument_count() >= 1) call get_command_argument(1, dir)
  if (command_argument_count() >= 2) call get_command_argument(2, extra)
  call icecorr_split(client, MPI_COMM_WORLD, model)
  call MPI_Comm_rank(model, p)
  call MPI_Comm_size(model, n_phys)
  if (len_trim(dir) == 0) call stop_here('usage: icecorr_coarse_driver KIT_DIR [OVERRIDES.nml]')
  call read_kit(trim(dir), trim(extra), kit, ierr, msg)
  if (ierr /= 0) call stop_here(trim(msg))
  nx = kit%nx
  ny = kit%ny

  ! ---- layout: tile groups, this rank's slots and tile
  n_tiles = kit%tiles_y * kit%tiles_x
  if (mod(n_phys, n_tiles) /= 0) call stop_here('the physics ranks are not a multiple of tiles_y × tiles_x')
  n_groups = n_phys / n_tiles
  g = p / n_tiles
  t = mod(p, n_tiles)
  call block_of(kit%n_windows * kit%members, n_groups, g, first_slot, n_slots)
  allocate(tiles(4, 0:n_tiles - 1), counts(0:n_tiles - 1), displs(0:n_tiles - 1))
  do k = 0, n_tiles - 1
     tiles(:, k) = tile_bounds(k, ny, nx, kit%tiles_y, kit%tiles_x, kit%row_ends, kit%col_ends)
     if (tiles(1, k) < 1 .or. tiles(2, k) > ny .or. tiles(1, k) > tiles(2, k) .or. tiles(3, k) < 1 .or. &
         tiles(4, k) > nx .or. tiles(3, k) > tiles(4, k)) call stop_here('row_ends/col_ends do not split the grid')
     counts(k) = (tiles(2, k) - tiles(1, k) + 1) * (tiles(4, k) - tiles(3, k) + 1) * n_fields * n_slots
  end do
  displs(0) = 0
  do k = 1, n_tiles - 1
     displs(k) = displs(k - 1) + counts(k - 1)
  end do
  tile = tiles(:, t)
  call MPI_Comm_split(model, g, t, group)

  ! ---- members: the initial state of their windows
  allocate(st(nx, ny, n_state_fields, n_slots), s12(0:nx, 0:ny, n_slots), istep0(n_slots))
  do s = 1, n_slots
     w = (first_slot + s - 1) / kit%members + 1
     call read_initial(kit, w, st(:, :, :, s), s12(:, :, s), ierr, msg)
     if (ierr /= 0) call stop_here(trim(msg))
  end do
  istep0 = 0
  nres = kit%pd%n_evp
  allocate(resid(nres), before(nx, ny, n_fields, n_slots), after(nx, ny, n_fields, n_slots), &
           forecast(nx, ny, n_fields, n_slots), gathered(sum(counts)))
  allocate(tb(tile(3):tile(4), tile(1):tile(2), n_fields, n_slots), &
           ta(tile(3):tile(4), tile(1):tile(2), n_fields, n_slots))

  ! ---- hello (test options may send a wrong version, grid or unit to see the refusal)
  var_units = field_units
  if (kit%unit_var >= 1 .and. kit%unit_var <= n_fields) var_units(kit%unit_var) = kit%unit_override
  if (kit%ny_offset /= 0) tile(1:2) = [1, ny + kit%ny_offset]
  call icecorr_init(client, MPI_COMM_WORLD, ny + kit%ny_offset, nx, kit%dx, tile, first_slot, n_slots, &
                    field_codes, var_units, kit%n_steps, model, ierr, timeout=kit%timeout_step, &
                    handshake_timeout=kit%timeout_handshake, total_slots=kit%n_windows * kit%members, &
                    version=kit%hello_version)
  if (ierr /= 0) call stop_here('icecorr_init failed')

  ! ---- initial exchange: the (maybe perturbed) initial state is record 0
  do s = 1, n_slots
     call read_fields(st(:, :, :, s), before(:, :, :, s))
  end do
  tb = before(tile(3):tile(4), tile(1):tile(2), :, :)
  call icecorr_start(client, tb)
  if (client%initial_changes == 1) then
     call rebuild(tb, after)
     call apply_all(after, before)
  end if

  ! ---- the cycle
  t_physics = 0.0_real64
  t_apply = 0.0_real64
  do step = 0, kit%n_steps - 1
     if (step == kit%die_at_step .and. p == kit%die_rank) then
        write(error_unit, '(a, i0, a, i0)') 'icecorr_coarse_driver: test option: physics rank ', p, &
             ' kills itself at step ', step
        flush(error_unit)
        ierr = c_raise(9_c_int)
     end if
     t0 = MPI_Wtime()
     do s = 1, n_slots
        w = (first_slot + s - 1) / kit%members + 1
        call read_fields(st(:, :, :, s), before(:, :, :, s))
        call coarse_run(kit%pd, kit%tp, nx, ny, kit%dx, kit%step_seconds, istep0(s), st(:, :, 1, s), &
                        st(:, :, 2, s), st(:, :, 3, s), st(:, :, 4, s), st(:, :, 5, s), st(:, :, 6, s), &
                        st(:, :, 7, s), st(:, :, 8, s), st(:, :, 9, s), s12(:, :, s), &
                        kit%forcing(:, :, :, kit%pairs(1, step + 1, w)), &
                        kit%forcing(:, :, :, kit%pairs(2, step + 1, w)), nres, resid, info, ierr)
        if (ierr /= 0) then
           write(msg, '(a, i0, a, i0, a, i0)') 'coarse model error code ', ierr, ' at step ', step, ' in slot ', &
                first_slot + s - 1
           call icecorr_abort(client, trim(msg))
        end if
        istep0(s) = istep0(s) + nint(info(info_nsteps))
        call read_fields(st(:, :, :, s), after(:, :, :, s))
        if (.not. all(abs(after(:, :, :, s)) <= huge(1.0_real64))) then
           write(msg, '(a, i0, a, i0)') 'non-finite physics forecast at step ', step, ' in slot ', first_slot + s - 1
           call icecorr_abort(client, trim(msg))
        end if
     end do
     forecast = after
     t_physics = t_physics + (MPI_Wtime() - t0)
     tb = before(tile(3):tile(4), tile(1):tile(2), :, :)
     ta = after(tile(3):tile(4), tile(1):tile(2), :, :)
     call icecorr_correct(client, step, tb, ta)
     t0 = MPI_Wtime()
     call rebuild(ta, after)
     call apply_all(after, forecast)
     t_apply = t_apply + (MPI_Wtime() - t0)
     if (kit%progress == 1) then
        write(output_unit, '(a, i0, a, i0, a)') 'icecorr_coarse_driver: physics rank ', p, ' step ', step, ' done'
        flush(output_unit)
     end if
  end do
  call icecorr_finalize(client)

  write(output_unit, '(a, i0, a, i0, a, i0, 4(a, es10.3), a, f0.4)') 'icecorr driver timing: rank ', p, ' slots ', &
       n_slots, ' steps ', kit%n_steps, ' physics_s_per_step ', t_physics / kit%n_steps, ' client_s_per_step ', &
       client%seconds_in_calls / kit%n_steps, ' rebuild_apply_s_per_step ', t_apply / kit%n_steps, &
       ' start_s ', client%seconds_start, &
       ' overhead_percent ', 100.0_real64 * (client%seconds_in_calls + t_apply) / max(t_physics, 1.0e-30_real64)
  flush(output_unit)
  call MPI_Comm_free(group)
  call MPI_Finalize()

contains

  !> Full corrected fields of this group's members from every tile of the group (MPI_Allgatherv over `group`).
  subroutine rebuild(mine, full)
    real(real64), intent(in) :: mine(:, :, :, :)
    real(real64), intent(inout) :: full(:, :, :, :)
    integer :: r, n, j0, j1, i0, i1
    if (n_tiles == 1) then
       full = mine
       return
    end if
    call MPI_Allgatherv(mine, size(mine), MPI_DOUBLE_PRECISION, gathered, counts, displs, MPI_DOUBLE_PRECISION, &
                        group)
    do r = 0, n_tiles - 1
       j0 = tiles(1, r); j1 = tiles(2, r); i0 = tiles(3, r); i1 = tiles(4, r)
       n = counts(r)
       full(i0:i1, j0:j1, :, :) = reshape(gathered(displs(r) + 1:displs(r) + n), [i1 - i0 + 1, j1 - j0 + 1, &
                                                                                 n_fields, n_slots])
    end do
  end subroutine rebuild

  !> Hand the corrected fields to every member (set_corrected), after set_state's checks.
  subroutine apply_all(corrected, reference)
    real(real64), intent(in) :: corrected(:, :, :, :), reference(:, :, :, :)
    character(len=:), allocatable :: problem
    do s = 1, n_slots
       if (all(corrected(:, :, :, s) == reference(:, :, :, s))) cycle
       problem = correction_problem(corrected(:, :, :, s))
       if (len(problem) > 0) then
          write(msg, '(a, a, i0)') problem, ' in slot ', first_slot + s - 1
          call icecorr_abort(client, trim(msg))
       end if
       call set_corrected(st(:, :, :, s), corrected(:, :, :, s), reference(:, :, :, s))
    end do
  end subroutine apply_all

  subroutine stop_here(text)
    character(len=*), intent(in) :: text
    write(error_unit, '(a, i0, a, a)') 'icecorr_coarse_driver: physics rank ', p, ': ', text
    flush(error_unit)
    call MPI_Abort(MPI_COMM_WORLD, 2)
  end subroutine stop_here

end program icecorr_coarse_driver
