! icecorr_kit: the inputs of the standalone Fortran driver, as written by `icecorr fortran-kit CONFIG --out DIR`
! (coupling/fortran_kit.py). DIR holds
!   kit.nml             &kit (grid, run, tiles, timeouts), &coarse (pd%…: coarse_params), &thermo (tp%…)
!   forcing.bin         n_records forcing snapshots, each real64 (nx, ny, nforc) in seaice_forcing order
!   forcing_pairs.bin   int32 (2, n_steps, n_windows): 1-based records of the forcing at the start and end of each
!                       step of each window (step n of window w = forcing index start[w] + n and + n + 1)
!   initial.bin         per window the full coarse state: a, vice, vsnow, tsurf, tos, u, v, s1, s2 (nx, ny), then
!                       s12 (nx + 1, ny + 1), real64, as CoarseModel holds it after set_state(initial state)
! An optional second namelist file (the driver's second argument) may override any &kit entry (tiles, test options).
module icecorr_kit
  use, intrinsic :: iso_fortran_env, only: int32, real64, error_unit
  use seaice_params, only: coarse_params, thermo_params
  use seaice_forcing, only: nforc
  implicit none
  private
  public :: kit_t, read_kit, read_initial, n_state_fields
  integer, parameter :: max_tiles = 64
  integer, parameter :: n_state_fields = 9   ! a, vice, vsnow, tsurf, tos, u, v, s1, s2 (then s12)

  !> Everything the driver reads; tiles: `row_ends`/`col_ends` the last row/column of each tile row/column
  !> (0 = equal split), test options: `hello_version`, `unit_override` (code of variable `unit_var`), `ny_offset`,
  !> `die_at_step`/`die_rank`, `progress`.
  type, public :: kit_t
     character(len=:), allocatable :: dir
     integer :: nx = 0, ny = 0, n_steps = 0, members = 0, n_windows = 0, n_records = 0
     real(real64) :: dx = 0.0_real64, step_seconds = 43200.0_real64
     integer :: tiles_y = 1, tiles_x = 1, row_ends(max_tiles) = 0, col_ends(max_tiles) = 0
     real(real64) :: timeout_step = 600.0_real64, timeout_handshake = 120.0_real64
     integer :: hello_version = 1, unit_var = 0, unit_override = 0, ny_offset = 0
     integer :: die_at_step = -1, die_rank = 0   ! test option: that physics rank kills itself (SIGKILL) there
     integer :: progress = 0                     ! 1: print a line after every step
     type(coarse_params) :: pd
     type(thermo_params) :: tp
     real(real64), allocatable :: forcing(:, :, :, :)     ! (nx, ny, nforc, n_records)
     integer(int32), allocatable :: pairs(:, :, :)        ! (2, n_steps, n_windows)
  end type kit_t

contains

  !> Read DIR/kit.nml (+ the optional override namelist `extra`), the forcing and its pair table; ierr /= 0 with a
  !> message in `msg` when a file is missing or malformed.
  subroutine read_kit(dir, extra, res, ierr, msg)
    character(len=*), intent(in) :: dir, extra
    type(kit_t), intent(out) :: res
    integer, intent(out) :: ierr
    character(len=*), intent(out) :: msg
    integer :: nx, ny, n_steps, members, n_windows, n_records, tiles_y, tiles_x, row_ends(max_tiles), &
               col_ends(max_tiles), hello_version, unit_var, unit_override, ny_offset, u, die_at_step, die_rank, &
               progress
    real(real64) :: dx, step_seconds, timeout_step, timeout_handshake
    type(coarse_params) :: pd
    type(thermo_params) :: tp
    namelist /kit/ nx, ny, dx, n_steps, members, n_windows, n_records, step_seconds, tiles_y, tiles_x, &
                   row_ends, col_ends, timeout_step, timeout_handshake, hello_version, unit_var, unit_override, &
                   ny_offset, die_at_step, die_rank, progress
    namelist /coarse/ pd
    namelist /thermo/ tp

    msg = ''
    nx = 0; ny = 0; n_steps = 0; members = 0; n_windows = 0; n_records = 0; dx = 0.0_real64
    step_seconds = 43200.0_real64; tiles_y = 1; tiles_x = 1; row_ends = 0; col_ends = 0
    timeout_step = 600.0_real64; timeout_handshake = 120.0_real64
    hello_version = 1; unit_var = 0; unit_override = 0; ny_offset = 0; die_at_step = -1; die_rank = 0; progress = 0
    open(newunit=u, file=dir // '/kit.nml', status='old', action='read', iostat=ierr)
    if (ierr /= 0) then
       msg = 'cannot open ' // dir // '/kit.nml (write it with `icecorr fortran-kit CONFIG --out DIR`)'
       return
    end if
    read(u, nml=kit, iostat=ierr)
    if (ierr == 0) read(u, nml=coarse, iostat=ierr)
    if (ierr == 0) read(u, nml=thermo, iostat=ierr)
    close(u)
    if (ierr /= 0) then
       msg = 'malformed ' // dir // '/kit.nml (groups &kit, &coarse, &thermo)'
       return
    end if
    if (len_trim(extra) > 0) then
       open(newunit=u, file=extra, status='old', action='read', iostat=ierr)
       if (ierr == 0) read(u, nml=kit, iostat=ierr)
       if (ierr /= 0) then
          msg = 'cannot read the &kit override namelist ' // trim(extra)
          return
       end if
       close(u)
    end if
    res%dir = dir
    res%nx = nx; res%ny = ny; res%dx = dx; res%n_steps = n_steps; res%members = members
    res%n_windows = n_windows; res%n_records = n_records; res%step_seconds = step_seconds
    res%tiles_y = tiles_y; res%tiles_x = tiles_x; res%row_ends = row_ends; res%col_ends = col_ends
    res%timeout_step = timeout_step; res%timeout_handshake = timeout_handshake
    res%hello_version = hello_version; res%unit_var = unit_var; res%unit_override = unit_override
    res%ny_offset = ny_offset
    res%die_at_step = die_at_step
    res%die_rank = die_rank
    res%progress = progress
    res%pd = pd
    res%tp = tp
    if (nx < 2 .or. ny < 2 .or. n_steps < 1 .or. members < 1 .or. n_windows < 1 .or. n_records < 2 .or. &
        tiles_y < 1 .or. tiles_x < 1 .or. tiles_y > max_tiles .or. tiles_x > max_tiles) then
       ierr = 1
       msg = 'kit.nml: bad grid, run or tile sizes'
       return
    end if
    allocate(res%forcing(nx, ny, nforc, n_records), res%pairs(2, n_steps, n_windows))
    call read_binary_real(dir // '/forcing.bin', res%forcing, ierr, msg)
    if (ierr /= 0) return
    open(newunit=u, file=dir // '/forcing_pairs.bin', access='stream', form='unformatted', status='old', &
         action='read', iostat=ierr)
    if (ierr == 0) read(u, iostat=ierr) res%pairs
    if (ierr /= 0) then
       msg = 'cannot read ' // dir // '/forcing_pairs.bin'
       return
    end if
    close(u)
    if (any(res%pairs < 1) .or. any(res%pairs > n_records)) then
       ierr = 1
       msg = 'forcing_pairs.bin: record outside forcing.bin'
    end if
  end subroutine read_kit

  subroutine read_binary_real(path, arr, ierr, msg)
    character(len=*), intent(in) :: path
    real(real64), intent(out) :: arr(:, :, :, :)
    integer, intent(out) :: ierr
    character(len=*), intent(out) :: msg
    integer :: u
    open(newunit=u, file=path, access='stream', form='unformatted', status='old', action='read', iostat=ierr)
    if (ierr == 0) read(u, iostat=ierr) arr
    if (ierr /= 0) then
       msg = 'cannot read ' // path // ' (size differs from kit.nml?)'
       return
    end if
    close(u)
  end subroutine read_binary_real

  !> The initial state of window `w` (1-based): st(nx, ny, n_state_fields) and s12(0:nx, 0:ny).
  subroutine read_initial(kit, w, st, s12, ierr, msg)
    type(kit_t), intent(in) :: kit
    integer, intent(in) :: w
    real(real64), intent(out) :: st(:, :, :), s12(:, :)
    integer, intent(out) :: ierr
    character(len=*), intent(out) :: msg
    integer :: u
    integer(kind=8) :: pos, per_window
    per_window = 8_8 * (int(kit%nx, 8) * kit%ny * n_state_fields + int(kit%nx + 1, 8) * (kit%ny + 1))
    pos = 1_8 + int(w - 1, 8) * per_window
    open(newunit=u, file=kit%dir // '/initial.bin', access='stream', form='unformatted', status='old', &
         action='read', iostat=ierr)
    if (ierr == 0) read(u, pos=pos, iostat=ierr) st, s12
    if (ierr /= 0) then
       msg = 'cannot read ' // kit%dir // '/initial.bin'
       return
    end if
    close(u)
    msg = ''
  end subroutine read_initial

end module icecorr_kit
