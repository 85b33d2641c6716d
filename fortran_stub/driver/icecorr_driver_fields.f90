! icecorr_driver_fields: what the Python physics rank does around an exchange, in Fortran, bit for bit
! (coupling/bridge.py get_state/set_state, coupling/fortran_arrays.py write_state, coupling/member_fields.py
! read_fields/set_corrected), plus the block and tile arithmetic of the driver.
!
! Exchanged variables (codes of docs/coupling-protocol.md): sic (1), sit (2, V/A where A > 0 else 0), snt (3),
! siu (4), siv (5). The model state of one member is st(nx, ny, 9) = a, vice, vsnow, tsurf, tos, u, v, s1, s2.
module icecorr_driver_fields
  use, intrinsic :: iso_fortran_env, only: real64
  implicit none
  private
  public :: read_fields, set_corrected, correction_problem, block_of, tile_bounds, n_fields, field_codes, &
            field_units, field_names
  integer, parameter :: n_fields = 5
  integer, parameter :: field_codes(n_fields) = [1, 2, 3, 4, 5]
  integer, parameter :: field_units(n_fields) = [1, 2, 2, 3, 3]      ! 1, m, m, m s-1, m s-1
  character(len=3), parameter :: field_names(n_fields) = ['sic', 'sit', 'snt', 'siu', 'siv']
  integer, parameter :: ia = 1, ivice = 2, ivsnow = 3, iu = 6, iv = 7

contains

  !> fields(nx, ny, 5) of one member's state st (get_state: thickness = volume / concentration where A > 0).
  subroutine read_fields(st, fields)
    real(real64), intent(in) :: st(:, :, :)
    real(real64), intent(out) :: fields(:, :, :)
    fields(:, :, 1) = st(:, :, ia)
    where (st(:, :, ia) > 0.0_real64)
       fields(:, :, 2) = st(:, :, ivice) / st(:, :, ia)
       fields(:, :, 3) = st(:, :, ivsnow) / st(:, :, ia)
    elsewhere
       fields(:, :, 2) = 0.0_real64
       fields(:, :, 3) = 0.0_real64
    end where
    fields(:, :, 4) = st(:, :, iu)
    fields(:, :, 5) = st(:, :, iv)
  end subroutine read_fields

  !> '' if the corrected fields may go into the model (set_state's checks: finite, sic in [0, 1], sit, snt >= 0),
  !> else the reason.
  function correction_problem(corrected) result(text)
    real(real64), intent(in) :: corrected(:, :, :)
    character(len=:), allocatable :: text
    integer :: k
    text = ''
    do k = 1, n_fields
       if (.not. all(abs(corrected(:, :, k)) <= huge(1.0_real64))) then
          text = 'non-finite corrected ' // trim(field_names(k))
          return
       end if
    end do
    if (minval(corrected(:, :, 1)) < 0.0_real64 .or. maxval(corrected(:, :, 1)) > 1.0_real64) then
       text = 'corrected sic outside [0, 1]'
    else if (minval(corrected(:, :, 2)) < 0.0_real64 .or. minval(corrected(:, :, 3)) < 0.0_real64) then
       text = 'negative corrected thickness (sit or snt)'
    end if
  end function correction_problem

  !> set_corrected + write_state: only the fields that changed (whole-field equality) go into the state; when sic
  !> changed, sit and snt go along; volumes = thickness × the new concentration; the wall faces of u, v are zeroed.
  subroutine set_corrected(st, corrected, forecast)
    real(real64), intent(inout) :: st(:, :, :)
    real(real64), intent(in) :: corrected(:, :, :), forecast(:, :, :)
    logical :: changed(n_fields)
    integer :: k, nx, ny
    nx = size(st, 1)
    ny = size(st, 2)
    do k = 1, n_fields
       changed(k) = any(corrected(:, :, k) /= forecast(:, :, k))
    end do
    if (.not. any(changed)) return
    if (changed(1)) changed(2:3) = .true.
    if (changed(1)) st(:, :, ia) = corrected(:, :, 1)
    if (changed(4)) st(:, :, iu) = corrected(:, :, 4)
    if (changed(5)) st(:, :, iv) = corrected(:, :, 5)
    if (changed(2)) st(:, :, ivice) = corrected(:, :, 2) * st(:, :, ia)
    if (changed(3)) st(:, :, ivsnow) = corrected(:, :, 3) * st(:, :, ia)
    st(nx, :, iu) = 0.0_real64
    st(:, ny, iv) = 0.0_real64
  end subroutine set_corrected

  !> Block `b` (0-based) of `n` items in `parts` contiguous, nearly equal blocks, the first ones one larger
  !> (coupling.layout.split_blocks): first item (0-based) and count.
  subroutine block_of(n, parts, b, first, count)
    integer, intent(in) :: n, parts, b
    integer, intent(out) :: first, count
    integer :: base, extra
    base = n / parts
    extra = mod(n, parts)
    count = base
    if (b < extra) count = count + 1
    first = b * base + min(b, extra)
  end subroutine block_of

  !> Tile `t` (0-based, row-major over tiles_y × tiles_x) of an ny × nx grid: [j0, j1, i0, i1], 1-based inclusive.
  !> ends(:) give the last row / column of each tile row / column; zeros mean equal blocks (split_blocks).
  function tile_bounds(t, ny, nx, tiles_y, tiles_x, row_ends, col_ends) result(tile)
    integer, intent(in) :: t, ny, nx, tiles_y, tiles_x, row_ends(:), col_ends(:)
    integer :: tile(4)
    tile(1:2) = axis_bounds(ny, tiles_y, t / tiles_x, row_ends)
    tile(3:4) = axis_bounds(nx, tiles_x, mod(t, tiles_x), col_ends)
  end function tile_bounds

  ! 1-based inclusive bounds of part k (0-based) of n cells in `parts`: nearly equal blocks (block_of), or the
  ! explicit part ends when any is given
  function axis_bounds(n, parts, k, ends) result(b)
    integer, intent(in) :: n, parts, k, ends(:)
    integer :: b(2)
    integer :: first, count
    if (all(ends(1:parts) == 0)) then
       call block_of(n, parts, k, first, count)
       b = [first + 1, first + count]
    else
       b(1) = 1
       if (k > 0) b(1) = ends(k) + 1
       b(2) = ends(k + 1)
    end if
  end function axis_bounds

end module icecorr_driver_fields
