// SPDX-License-Identifier: MIT
// tests/mpi/main.cpp — doctest main of the data-parallel tests, run under mpiexec: every rank runs
// every test case (they are collective). The exit code is non-zero on every rank when any rank
// had a failure, so that mpiexec and ctest report it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "ddpm/train/mpi.hpp"

int main(int argc, char** argv) {
  ddpm::dist::MpiSession mpi(argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  doctest::Context context(argc, argv);
  if (rank != 0) context.setOption("no-version", true);
  int failed = context.run();
  if (context.shouldExit()) return failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) std::printf("ddpm MPI tests: %d ranks, %s\n", size, failed ? "FAILED" : "passed");
  return failed ? 1 : 0;
}
