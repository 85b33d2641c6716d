! icecorr_client: the physics side of the icecorr coupling protocol, version 1 (docs/coupling-protocol.md), for
! Fortran models. Plain MPI buffers (int32 / float64) with fixed tags; every wait has a deadline, and any failure
! prints one line naming this rank and its peer and calls MPI_Abort on the launch communicator (no rank hangs).
!
!   type(icecorr_client_t) :: c
!   call icecorr_split(c, launch_comm, model_comm)        ! optional: doc §1 only (model_comm: the model's world)
!   call icecorr_init(c, launch_comm, ny, nx, dx, tile, first_slot, n_slots, var_codes, unit_codes, n_steps, &
!                     model_comm, ierr [, timeout, handshake_timeout, total_slots, version])
!        tile = [j0, j1, i0, i1] (1-based, inclusive); var_codes/unit_codes: the variables this rank can provide
!        (doc §2); n_steps = -1 takes the server's. Hello, reply; a refusal prints the text, acknowledges, aborts.
!   call icecorr_start(c, fields)                          ! initial exchange (kind 0)
!   call icecorr_correct(c, step, before, after)           ! kind 1: `after` gets the corrected fields in place
!   call icecorr_finalize(c)                               ! kind 2; frees the coupling and model communicators
!   call icecorr_abort(c, text [, step])                   ! kind 3: tell the ML partner why, then MPI_Abort
! Field arrays are real(real64) (i0:i1, j0:j1, n_vars, n_slots): this rank's tile of each variable of var_codes
! (in that order) for each slot it holds. Only the variables the server asks for (icecorr_exchange_codes) travel
! and only those are overwritten by icecorr_correct; `c%initial_changes` is 1 when icecorr_start may change fields.
module icecorr_client
  use mpi_f08
  use, intrinsic :: iso_fortran_env, only: int32, real64, error_unit
  use, intrinsic :: iso_c_binding, only: c_int
  implicit none
  private
  public :: icecorr_client_t, icecorr_split, icecorr_init, icecorr_start, icecorr_correct, icecorr_finalize, &
            icecorr_abort, icecorr_exchange_codes

  integer, parameter, public :: icecorr_magic = 20250607, icecorr_protocol_version = 1
  integer, parameter :: tag_hello_int = 7101, tag_hello_real = 7102, tag_reply = 7103, tag_text = 7104, &
                        tag_ack = 7105, tag_header = 7200, tag_fields = 7201, tag_corrected = 7202
  integer, parameter :: kind_initial = 0, kind_step = 1, kind_end = 2, kind_abort = 3
  integer, parameter :: role_physics = 0, role_ml = 1, role_unstated = -1

  interface
     integer(c_int) function c_usleep(usec) bind(C, name="usleep")
       import :: c_int
       integer(c_int), value :: usec
     end function c_usleep
  end interface

  !> Everything one physics rank needs to talk to its ML partner.
  type :: icecorr_client_t
     type(MPI_Comm) :: launch, coupling, model
     logical :: split_done = .false., connected = .false., started = .false.
     integer :: rank = -1                  ! launch rank
     integer :: n_ml = 0                   ! ML ranks of the launch
     integer :: partner = -1, writer = -1  ! launch ranks of the ML partner and of the writer
     integer :: ny = 0, nx = 0, j0 = 0, j1 = 0, i0 = 0, i1 = 0, tny = 0, tnx = 0
     integer :: first_slot = 0, n_slots = 0, n_vars = 0, n_exchange = 0
     integer :: n_steps = -1, restart_interval = 0, initial_changes = 0, last_step = -1
     integer, allocatable :: var_codes(:), unit_codes(:), exchange_codes(:), exchange_index(:)
     real(real64) :: timeout = 600.0_real64            ! step deadline (s)
     real(real64) :: handshake_timeout = 120.0_real64  ! hello/reply deadline (s)
     real(real64) :: seconds_in_calls = 0.0_real64     ! wall time spent inside icecorr_correct (s)
     real(real64) :: seconds_start = 0.0_real64        ! wall time of icecorr_start (s; opens the server's files)
     real(real64), allocatable :: send_buf(:, :, :, :, :)   ! (tnx, tny, n_exchange, 2, n_slots)
     real(real64), allocatable :: recv_buf(:, :, :, :)      ! (tnx, tny, n_exchange, n_slots)
  end type icecorr_client_t

contains

  !> Doc section 1: dup the launch communicator, gather [role, appnum], split by role. `model_comm` receives the
  !> physics ranks' communicator (the model's own world). Collective over `launch_comm` (both sides).
  subroutine icecorr_split(c, launch_comm, model_comm)
    type(icecorr_client_t), intent(inout) :: c
    type(MPI_Comm), intent(in) :: launch_comm
    type(MPI_Comm), intent(out) :: model_comm
    integer(int32) :: mine(2)
    integer(int32), allocatable :: roles(:, :)
    integer :: nranks, appnum, me, n_phys, k, b, n, lo, hi, base, extra
    logical :: found
    integer(kind=MPI_ADDRESS_KIND) :: attr

    if (c%split_done) then
       model_comm = c%model
       return
    end if
    c%launch = launch_comm
    call MPI_Comm_dup(launch_comm, c%coupling)
    call MPI_Comm_rank(c%coupling, c%rank)
    call MPI_Comm_size(c%coupling, nranks)
    appnum = -1
    call MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, attr, found)
    if (found) appnum = int(attr)
    mine = [int(role_physics, int32), int(appnum, int32)]
    allocate(roles(2, 0:nranks - 1))
    call MPI_Allgather(mine, 2, MPI_INTEGER4, roles, 2, MPI_INTEGER4, c%coupling)
    call MPI_Comm_split(c%coupling, role_physics, c%rank, c%model)
    c%split_done = .true.
    model_comm = c%model
    ! this rank states role 0, so "unstated ranks are physics" applies: the ML ranks are those that stated 1
    c%n_ml = count(roles(1, :) == role_ml)
    if (c%n_ml == 0) call fail(c, "no rank of the launch states the ML role (is `icecorr serve` part of the job?)")
    n_phys = count(roles(1, :) /= role_ml)
    me = count(roles(1, 0:c%rank - 1) /= role_ml)     ! this rank's index among the physics ranks
    ! pairing: physics ranks in contiguous, nearly equal blocks over the ML ranks (split_blocks)
    base = n_phys / c%n_ml
    extra = mod(n_phys, c%n_ml)
    lo = 0
    do b = 0, c%n_ml - 1
       hi = lo + base
       if (b < extra) hi = hi + 1
       if (me >= lo .and. me < hi) exit
       lo = hi
    end do
    k = -1
    do n = 0, nranks - 1
       if (roles(1, n) == role_ml) k = k + 1
       if (k == b) exit
    end do
    c%partner = n
    c%writer = findloc(roles(1, :), role_ml, dim=1) - 1
  end subroutine icecorr_split

  !> Doc sections 1, 3, 4: split (if not done), hello to the ML partner, reply. ierr = 0 on return: bad arguments,
  !> a refusal or a timeout print a message and abort the job (the ML side would otherwise wait for the hello).
  subroutine icecorr_init(c, launch_comm, ny, nx, dx, tile, first_slot, n_slots, var_codes, unit_codes, n_steps, &
                          model_comm, ierr, timeout, handshake_timeout, total_slots, version)
    type(icecorr_client_t), intent(inout) :: c
    type(MPI_Comm), intent(in) :: launch_comm
    integer, intent(in) :: ny, nx, tile(4), first_slot, n_slots, var_codes(:), unit_codes(:), n_steps
    real(real64), intent(in) :: dx
    type(MPI_Comm), intent(out) :: model_comm
    integer, intent(out) :: ierr
    real(real64), intent(in), optional :: timeout, handshake_timeout
    integer, intent(in), optional :: total_slots, version
    integer(int32), allocatable :: hello(:), reply(:)
    real(real64) :: hello_real(4)
    integer :: nv, k, n, status_code
    type(MPI_Request) :: reqs(2)

    ierr = 0
    call icecorr_split(c, launch_comm, model_comm)
    if (present(timeout)) c%timeout = timeout
    if (present(handshake_timeout)) c%handshake_timeout = handshake_timeout
    nv = size(var_codes)
    if (size(unit_codes) /= nv .or. nv < 1 .or. n_slots < 0 .or. ny < 1 .or. nx < 1 .or. &
        tile(1) < 1 .or. tile(2) > ny .or. tile(1) > tile(2) .or. tile(3) < 1 .or. tile(4) > nx .or. &
        tile(3) > tile(4)) then
       ierr = 1   ! the ML side waits for this rank's hello: end the job rather than let it time out
       call fail(c, 'icecorr_init: bad arguments (variables and units differ in length, or a tile outside the grid)')
    end if
    c%ny = ny; c%nx = nx
    c%j0 = tile(1); c%j1 = tile(2); c%i0 = tile(3); c%i1 = tile(4)
    c%tny = c%j1 - c%j0 + 1; c%tnx = c%i1 - c%i0 + 1
    c%first_slot = first_slot; c%n_slots = n_slots; c%n_vars = nv
    c%var_codes = var_codes
    c%unit_codes = unit_codes

    allocate(hello(16 + 2 * nv))
    hello(1:16) = [icecorr_magic, icecorr_protocol_version, ny, nx, c%j0, c%j1, c%i0, c%i1, first_slot, n_slots, &
                   nv, 0, 0, -1, n_steps, 0]
    if (present(version)) hello(2) = version
    if (present(total_slots)) hello(14) = total_slots
    hello(17:16 + nv) = var_codes
    hello(17 + nv:16 + 2 * nv) = unit_codes
    hello_real = [dx, 0.0_real64, 0.0_real64, 0.0_real64]
    call MPI_Isend(hello, size(hello), MPI_INTEGER4, c%partner, tag_hello_int, c%coupling, reqs(1))
    call MPI_Isend(hello_real, 4, MPI_DOUBLE_PRECISION, c%partner, tag_hello_real, c%coupling, reqs(2))
    call wait_all(c, reqs, c%handshake_timeout, 'the start-up reply')

    n = probe_count(c, tag_reply, MPI_INTEGER4, c%handshake_timeout, 'the start-up reply')
    allocate(reply(max(n, 8)))
    reply = 0
    call MPI_Recv(reply, n, MPI_INTEGER4, c%partner, tag_reply, c%coupling, MPI_STATUS_IGNORE)
    status_code = reply(1)
    if (status_code /= 0) call refused(c, reply(7), status_code)
    c%n_steps = reply(3)
    c%restart_interval = reply(4)
    c%initial_changes = reply(5)
    c%writer = reply(6)
    c%n_exchange = reply(8)
    if (n < 8 + c%n_exchange) call fail(c, 'the start-up reply is shorter than its variable list')
    c%exchange_codes = reply(9:8 + c%n_exchange)
    allocate(c%exchange_index(c%n_exchange))
    do k = 1, c%n_exchange
       c%exchange_index(k) = findloc(var_codes, c%exchange_codes(k), dim=1)
       if (c%exchange_index(k) == 0) call fail(c, 'the ML side asks for a variable code this rank did not offer')
    end do
    allocate(c%send_buf(c%tnx, c%tny, c%n_exchange, 2, n_slots), c%recv_buf(c%tnx, c%tny, c%n_exchange, n_slots))
    c%send_buf = 0.0_real64
    c%recv_buf = 0.0_real64
    c%connected = .true.
  end subroutine icecorr_init

  !> The variable codes that travel every step, in exchange order (a subset of the init's var_codes).
  function icecorr_exchange_codes(c) result(codes)
    type(icecorr_client_t), intent(in) :: c
    integer, allocatable :: codes(:)
    codes = c%exchange_codes
  end function icecorr_exchange_codes

  !> Initial exchange (kind 0) of the initial state `fields` (i0:i1, j0:j1, n_vars, n_slots); when the server
  !> perturbs the initial state (c%initial_changes == 1) the exchanged variables of `fields` are replaced.
  subroutine icecorr_start(c, fields)
    type(icecorr_client_t), intent(inout) :: c
    real(real64), intent(inout) :: fields(c%i0:, c%j0:, :, :)
    call exchange(c, kind_initial, -1, fields, fields, c%initial_changes == 1)
    c%started = .true.
  end subroutine icecorr_start

  !> A 12 h step `step` (0-based) is done (kind 1): sends `before` (state at the start of the step) and `after`
  !> (the forecast), receives the corrected state into the exchanged variables of `after`.
  subroutine icecorr_correct(c, step, before, after)
    type(icecorr_client_t), intent(inout) :: c
    integer, intent(in) :: step
    real(real64), intent(in) :: before(c%i0:, c%j0:, :, :)
    real(real64), intent(inout) :: after(c%i0:, c%j0:, :, :)
    call exchange(c, kind_step, step, before, after, .true.)
    c%last_step = step
  end subroutine icecorr_correct

  !> End (kind 2): the last step has run. Frees the coupling and the model communicators.
  subroutine icecorr_finalize(c)
    type(icecorr_client_t), intent(inout) :: c
    integer(int32) :: header(2)
    type(MPI_Request) :: req(1)
    if (.not. c%connected) return
    if (c%n_slots > 0) then
       header = [int(kind_end, int32), int(c%n_steps - 1, int32)]   ! doc §5: steps of the run - 1
       call MPI_Isend(header, 2, MPI_INTEGER4, c%partner, tag_header, c%coupling, req(1))
       call wait_all(c, req, c%timeout, 'delivery of the end message')
    end if
    call MPI_Comm_free(c%coupling)
    call MPI_Comm_free(c%model)
    c%connected = .false.
    c%split_done = .false.
  end subroutine icecorr_finalize

  !> Abort (kind 3): print `text`, tell the ML partner why (best effort, 5 s) and call MPI_Abort. `step`: the last
  !> step begun (default: -1 before icecorr_start, else the step after the last corrected one).
  subroutine icecorr_abort(c, text, step)
    type(icecorr_client_t), intent(inout) :: c
    character(len=*), intent(in) :: text
    integer, intent(in), optional :: step
    integer(int32) :: header(2)
    integer(int32), allocatable :: codes(:)
    type(MPI_Request) :: reqs(2)
    logical :: done
    real(real64) :: deadline
    integer :: k
    write(error_unit, '(a, i0, a, a)') 'icecorr client: physics rank ', c%rank, ' aborts: ', trim(text)
    flush(error_unit)
    if (c%connected) then
       header = [int(kind_abort, int32), int(merge(c%last_step + 1, -1, c%started), int32)]
       if (present(step)) header(2) = int(step, int32)
       allocate(codes(len_trim(text)))
       do k = 1, size(codes)
          codes(k) = int(iachar(text(k:k)), int32)
       end do
       call MPI_Isend(header, 2, MPI_INTEGER4, c%partner, tag_header, c%coupling, reqs(1))
       call MPI_Isend(codes, size(codes), MPI_INTEGER4, c%partner, tag_text, c%coupling, reqs(2))
       deadline = MPI_Wtime() + 5.0_real64
       do
          call MPI_Testall(2, reqs, done, MPI_STATUSES_IGNORE)
          if (done .or. MPI_Wtime() > deadline) exit
          k = c_usleep(1000_c_int)
       end do
    end if
    call MPI_Abort(c%launch, 1)
  end subroutine icecorr_abort

  !> One exchange: header, FIELDS (before, after) of the exchanged variables, CORRECTED back into `after`.
  subroutine exchange(c, kind, step, before, after, apply)
    type(icecorr_client_t), intent(inout) :: c
    integer, intent(in) :: kind, step
    real(real64), intent(in) :: before(c%i0:, c%j0:, :, :)
    real(real64), intent(inout) :: after(c%i0:, c%j0:, :, :)
    logical, intent(in) :: apply
    integer(int32) :: header(2)
    type(MPI_Request) :: reqs(3)
    integer :: s, k, v, n
    real(real64) :: t0
    character(len=64) :: what

    t0 = MPI_Wtime()
    if (.not. c%connected) call fail(c, 'icecorr_start/icecorr_correct before icecorr_init (or after finalize)')
    if (size(after, 1) /= c%tnx .or. size(after, 2) /= c%tny .or. size(after, 3) /= c%n_vars .or. &
        size(after, 4) /= c%n_slots .or. any(shape(before) /= shape(after))) &
       call fail(c, 'field arrays are not (i0:i1, j0:j1, n_vars, n_slots)')
    if (c%n_slots == 0) return   ! a rank without members exchanges nothing (as the Python client)
    do s = 1, c%n_slots
       do k = 1, c%n_exchange
          v = c%exchange_index(k)
          c%send_buf(:, :, k, 1, s) = before(:, :, v, s)
          c%send_buf(:, :, k, 2, s) = after(:, :, v, s)
       end do
    end do
    header = [int(kind, int32), int(step, int32)]
    n = size(c%send_buf)
    call MPI_Isend(header, 2, MPI_INTEGER4, c%partner, tag_header, c%coupling, reqs(1))
    call MPI_Isend(c%send_buf, n, MPI_DOUBLE_PRECISION, c%partner, tag_fields, c%coupling, reqs(2))
    call MPI_Irecv(c%recv_buf, size(c%recv_buf), MPI_DOUBLE_PRECISION, c%partner, tag_corrected, c%coupling, &
                   reqs(3))
    write(what, '(a, i0)') 'the corrected fields of step ', step
    call wait_all(c, reqs, c%timeout, trim(what))
    if (apply) then
       do s = 1, c%n_slots
          do k = 1, c%n_exchange
             after(:, :, c%exchange_index(k), s) = c%recv_buf(:, :, k, s)
          end do
       end do
    end if
    if (kind == kind_initial) then
       c%seconds_start = c%seconds_start + (MPI_Wtime() - t0)
    else
       c%seconds_in_calls = c%seconds_in_calls + (MPI_Wtime() - t0)
    end if
  end subroutine exchange

  !> Wait for all `reqs` until `limit` seconds have passed; then print who waited for what and abort.
  subroutine wait_all(c, reqs, limit, what)
    type(icecorr_client_t), intent(inout) :: c
    type(MPI_Request), intent(inout) :: reqs(:)
    real(real64), intent(in) :: limit
    character(len=*), intent(in) :: what
    logical :: done
    real(real64) :: deadline
    integer :: spins, k
    deadline = MPI_Wtime() + limit
    spins = 0
    do
       call MPI_Testall(size(reqs), reqs, done, MPI_STATUSES_IGNORE)
       if (done) return
       if (MPI_Wtime() > deadline) call timed_out(c, limit, what)
       spins = spins + 1
       ! poll hard for a moment (a quick answer is the common case), then yield the core to the ML rank
       if (spins > 2000) k = c_usleep(50_c_int)
    end do
  end subroutine wait_all

  !> Count of the next message with `tag` from the partner, waiting at most `limit` seconds.
  integer function probe_count(c, tag, datatype, limit, what) result(n)
    type(icecorr_client_t), intent(inout) :: c
    integer, intent(in) :: tag
    type(MPI_Datatype), intent(in) :: datatype
    real(real64), intent(in) :: limit
    character(len=*), intent(in) :: what
    logical :: flag
    type(MPI_Status) :: st
    real(real64) :: deadline
    integer :: k
    deadline = MPI_Wtime() + limit
    do
       call MPI_Iprobe(c%partner, tag, c%coupling, flag, st)
       if (flag) exit
       if (MPI_Wtime() > deadline) call timed_out(c, limit, what)
       k = c_usleep(200_c_int)
    end do
    call MPI_Get_count(st, datatype, n)
  end function probe_count

  subroutine timed_out(c, limit, what)
    type(icecorr_client_t), intent(inout) :: c
    real(real64), intent(in) :: limit
    character(len=*), intent(in) :: what
    write(error_unit, '(a, i0, a, f0.1, a, a, a, i0, a)') 'icecorr client: physics rank ', c%rank, &
         ' timed out after ', limit, ' s waiting for ', what, ' from ML rank ', c%partner, &
         ' (the ML rank is silent); aborting the job'
    flush(error_unit)
    call MPI_Abort(c%launch, 1)
  end subroutine timed_out

  !> The server refused the hello: print its text, acknowledge, abort.
  subroutine refused(c, text_len, status_code)
    type(icecorr_client_t), intent(inout) :: c
    integer, intent(in) :: text_len, status_code
    integer(int32), allocatable :: codes(:)
    integer(int32) :: empty(1)
    character(len=:), allocatable :: text
    type(MPI_Request) :: reqs(1)
    integer :: k
    allocate(codes(max(text_len, 1)))
    codes = 32
    if (text_len > 0) then
       reqs(1) = MPI_REQUEST_NULL
       call MPI_Irecv(codes, text_len, MPI_INTEGER4, c%partner, tag_text, c%coupling, reqs(1))
       call wait_all(c, reqs, c%handshake_timeout, 'the refusal text')
    end if
    allocate(character(len=max(text_len, 0)) :: text)
    do k = 1, text_len
       text(k:k) = achar(codes(k))
    end do
    write(error_unit, '(a, i0, a, i0, a, i0, a, a)') 'icecorr client: physics rank ', c%rank, &
         ': the ML rank ', c%partner, ' refused the start-up (status ', status_code, '): ', text
    flush(error_unit)
    call MPI_Isend(empty, 0, MPI_INTEGER4, c%partner, tag_ack, c%coupling, reqs(1))
    call wait_all(c, reqs, 5.0_real64, 'delivery of the acknowledgement')
    call MPI_Abort(c%launch, 1)
  end subroutine refused

  subroutine fail(c, text)
    type(icecorr_client_t), intent(inout) :: c
    character(len=*), intent(in) :: text
    write(error_unit, '(a, i0, a, a)') 'icecorr client: physics rank ', c%rank, ': ', text
    flush(error_unit)
    call MPI_Abort(c%launch, 1)
  end subroutine fail

end module icecorr_client
