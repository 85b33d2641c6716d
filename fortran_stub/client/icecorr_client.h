/* icecorr_client.h: the C interface of the icecorr Fortran coupling client (libicecorr_client.a, built with bind(C);
 * link with mpifort, or add -lgfortran and MPI's Fortran libraries). Protocol: docs/coupling-protocol.md; API and
 * conventions: docs/fortran-client.md.
 *
 * A client is an int handle. Communicators travel as Fortran handles: pass MPI_Comm_c2f(MPI_COMM_WORLD), turn the
 * model communicator back with MPI_Comm_f2c(model_comm). Field arrays are C-ordered doubles
 * [n_slots][n_vars][tile_ny][tile_nx] (variables in var_codes order). Tiles: {j0, j1, i0, i1}, 1-based, inclusive.
 * Failures (refusal, timeouts, a dead peer) print a message and abort the whole MPI job. */
#ifndef ICECORR_CLIENT_H
#define ICECORR_CLIENT_H

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Split, hello, reply. Returns the handle (>= 0) or -1 (bad arguments). n_steps -1: the server's; timeout <= 0:
 * 600 s. */
int icecorr_init(MPI_Fint launch_comm, int ny, int nx, double dx, const int tile[4], int first_slot, int n_slots,
                 int n_vars, const int *var_codes, const int *unit_codes, int n_steps, double timeout,
                 MPI_Fint *model_comm);
/* The number of exchanged variables; their codes into codes[0 .. max_codes-1]. */
int icecorr_exchange_codes(int handle, int *codes, int max_codes);
/* 1 if icecorr_start may change the fields (initial perturbation). */
int icecorr_initial_changes(int handle);
/* Initial exchange (before step 0). */
int icecorr_start(int handle, double *fields);
/* After the 12 h step `step` (0-based): `after` receives the corrected exchanged variables in place. */
int icecorr_correct(int handle, int step, const double *before, double *after);
/* End of the run; frees the model communicator. */
int icecorr_finalize(int handle);
/* Tell the ML side why, then MPI_Abort. Does not return. */
void icecorr_abort(int handle, const char *text);

#ifdef __cplusplus
}
#endif
#endif
