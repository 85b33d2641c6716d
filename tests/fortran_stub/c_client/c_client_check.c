/* Exercise icecorr_client.h from C: one slot of the whole 4 x 3 grid, two variables (sic, sit), one step; the
 * doc-only fake server answers with the forecast, so `after` must come back unchanged. Prints "c client ok". */
#include <stdio.h>
#include <mpi.h>
#include "icecorr_client.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int tile[4] = {1, 3, 1, 4}, codes[2] = {1, 2}, units[2] = {1, 2}, got[8];
    MPI_Fint model;
    int h = icecorr_init(MPI_Comm_c2f(MPI_COMM_WORLD), 3, 4, 1000.0, tile, 0, 1, 2, codes, units, 1, 30.0, &model);
    double before[2][3][4], after[2][3][4], expect[2][3][4];
    for (int v = 0; v < 2; v++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++) {
                before[v][j][i] = 0.5 + v + 0.01 * j + 0.001 * i;
                after[v][j][i] = expect[v][j][i] = before[v][j][i] + 0.25;
            }
    int n = icecorr_exchange_codes(h, got, 8);
    icecorr_start(h, &before[0][0][0]);
    icecorr_correct(h, 0, &before[0][0][0], &after[0][0][0]);
    int same = 1;
    for (int v = 0; v < 2; v++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++) same &= after[v][j][i] == expect[v][j][i];
    MPI_Comm comm = MPI_Comm_f2c(model);
    int size;
    MPI_Comm_size(comm, &size);
    icecorr_finalize(h);
    printf("c client %s: handle %d, %d exchanged, model ranks %d\n", same ? "ok" : "WRONG", h, n, size);
    MPI_Finalize();
    return same ? 0 : 1;
}
