! icecorr_client_c: the C binding (bind(C)) of icecorr_client, declared in icecorr_client.h. A client is an integer
! handle (0 … max_clients - 1); communicators travel as Fortran handles (MPI_Fint: MPI_Comm_c2f / MPI_Comm_f2c);
! field arrays are C-ordered doubles (n_slots, n_vars, tile_ny, tile_nx) = Fortran (tile_nx, tile_ny, n_vars, n_slots).
module icecorr_client_c
  use, intrinsic :: iso_c_binding, only: c_int, c_double, c_char, c_null_char
  use mpi_f08, only: MPI_Comm
  use icecorr_client
  implicit none
  private
  integer, parameter :: max_clients = 8
  type(icecorr_client_t), target, save :: clients(0:max_clients - 1)
  logical, save :: used(0:max_clients - 1) = .false.

contains

  !> icecorr_init; returns the handle (>= 0) or -1 (bad arguments, or no free handle). model_comm receives the
  !> model communicator as a Fortran handle. timeout <= 0 keeps the default (600 s).
  integer(c_int) function icecorr_c_init(launch_comm, ny, nx, dx, tile, first_slot, n_slots, n_vars, var_codes, &
                                         unit_codes, n_steps, timeout, model_comm) result(handle) &
                                         bind(C, name="icecorr_init")
    integer(c_int), value :: launch_comm, ny, nx, first_slot, n_slots, n_vars, n_steps
    real(c_double), value :: dx, timeout
    integer(c_int), intent(in) :: tile(4), var_codes(n_vars), unit_codes(n_vars)
    integer(c_int), intent(out) :: model_comm
    type(MPI_Comm) :: launch, model
    integer :: ierr, h
    handle = -1
    do h = 0, max_clients - 1
       if (.not. used(h)) exit
    end do
    if (h >= max_clients) return
    launch%MPI_VAL = launch_comm
    if (timeout > 0) then
       call icecorr_init(clients(h), launch, ny, nx, dx, tile, first_slot, n_slots, var_codes, unit_codes, &
                         n_steps, model, ierr, timeout=timeout)
    else
       call icecorr_init(clients(h), launch, ny, nx, dx, tile, first_slot, n_slots, var_codes, unit_codes, &
                         n_steps, model, ierr)
    end if
    if (ierr /= 0) return
    model_comm = model%MPI_VAL
    used(h) = .true.
    handle = h
  end function icecorr_c_init

  !> Number of exchanged variables; their codes go to codes(1:min(n, max_codes)); -1 for a bad handle.
  integer(c_int) function icecorr_c_exchange_codes(handle, codes, max_codes) result(n) &
                                                    bind(C, name="icecorr_exchange_codes")
    integer(c_int), value :: handle, max_codes
    integer(c_int), intent(out) :: codes(max_codes)
    n = -1
    if (.not. valid(handle)) return
    n = clients(handle)%n_exchange
    codes(1:min(n, max_codes)) = clients(handle)%exchange_codes(1:min(n, max_codes))
  end function icecorr_c_exchange_codes

  !> 1 if the initial exchange may change the fields (initial perturbation), 0 if not, -1 for a bad handle.
  integer(c_int) function icecorr_c_initial_changes(handle) result(flag) bind(C, name="icecorr_initial_changes")
    integer(c_int), value :: handle
    flag = -1
    if (valid(handle)) flag = clients(handle)%initial_changes
  end function icecorr_c_initial_changes

  integer(c_int) function icecorr_c_start(handle, fields) result(ierr) bind(C, name="icecorr_start")
    integer(c_int), value :: handle
    real(c_double), intent(inout) :: fields(*)
    ierr = 1
    if (.not. valid(handle)) return
    call start(clients(handle), fields)
    ierr = 0
  end function icecorr_c_start

  integer(c_int) function icecorr_c_correct(handle, step, before, after) result(ierr) bind(C, name="icecorr_correct")
    integer(c_int), value :: handle, step
    real(c_double), intent(in) :: before(*)
    real(c_double), intent(inout) :: after(*)
    ierr = 1
    if (.not. valid(handle)) return
    call correct(clients(handle), step, before, after)
    ierr = 0
  end function icecorr_c_correct

  integer(c_int) function icecorr_c_finalize(handle) result(ierr) bind(C, name="icecorr_finalize")
    integer(c_int), value :: handle
    ierr = 1
    if (.not. valid(handle)) return
    call icecorr_finalize(clients(handle))
    used(handle) = .false.
    ierr = 0
  end function icecorr_c_finalize

  !> text: a NUL-terminated C string. Does not return.
  subroutine icecorr_c_abort(handle, text) bind(C, name="icecorr_abort")
    integer(c_int), value :: handle
    character(kind=c_char), intent(in) :: text(*)
    character(len=:), allocatable :: message
    integer :: k
    k = 0
    do while (text(k + 1) /= c_null_char .and. k < 4096)
       k = k + 1
    end do
    allocate(character(len=k) :: message)
    message = transfer(text(1:k), message)
    if (valid(handle)) then
       call icecorr_abort(clients(handle), message)
    else
       call icecorr_abort(clients(0), message)
    end if
  end subroutine icecorr_c_abort

  logical function valid(handle)
    integer(c_int), intent(in) :: handle
    valid = handle >= 0 .and. handle < max_clients
    if (valid) valid = used(handle)
  end function valid

  ! explicit-shape views of the C arrays with the client's tile bounds
  subroutine start(c, fields)
    type(icecorr_client_t), intent(inout) :: c
    real(c_double), intent(inout) :: fields(c%i0:c%i1, c%j0:c%j1, c%n_vars, c%n_slots)
    call icecorr_start(c, fields)
  end subroutine start

  subroutine correct(c, step, before, after)
    type(icecorr_client_t), intent(inout) :: c
    integer(c_int), intent(in) :: step
    real(c_double), intent(in) :: before(c%i0:c%i1, c%j0:c%j1, c%n_vars, c%n_slots)
    real(c_double), intent(inout) :: after(c%i0:c%i1, c%j0:c%j1, c%n_vars, c%n_slots)
    call icecorr_correct(c, step, before, after)
  end subroutine correct

end module icecorr_client_c
