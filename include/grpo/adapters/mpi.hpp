// SPDX-License-Identifier: MIT
// grpo's communicator over MPI: data-parallel grpo (<grpo/distributed.hpp>) on a host's MPI_Comm.
// CMake: target grpo::mpi (find_package(grpo COMPONENTS mpi)); needs an MPI implementation (OpenMPI, MPICH).
#pragma once

// MPI's C API only: the deprecated C++ bindings (removed in MPI-3) are not needed and do not compile cleanly.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <string>

#include "../distributed.hpp"

GRPO_NAMESPACE_BEGIN
namespace dist {

/// A grpo communicator (see dist::self_communicator for the concept) over a host-supplied MPI communicator,
/// which the host keeps alive (and MPI initialized) while this object is in use. MPI_Allgather on MPI_BYTE, in
/// chunks of at most INT_MAX bytes; a failing MPI call throws grpo::error (errc::communication) with MPI's
/// message (the communicator's error handler must return errors for that: MPI_ERRORS_RETURN; MPI's default
/// aborts the job instead).
class mpi_communicator {
public:
    /// Throws grpo::error (errc::communication) when MPI is not initialized or the communicator is null.
    explicit mpi_communicator(MPI_Comm comm) : comm_(comm) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (!initialized)
            detail::raise_argument(errc::communication, "dist::mpi_communicator", "comm",
                                   "a communicator after MPI_Init", "MPI not initialized");
        if (comm == MPI_COMM_NULL)
            detail::raise_argument(errc::communication, "dist::mpi_communicator", "comm", "a communicator",
                                   "MPI_COMM_NULL");
        check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    }
    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    MPI_Comm native() const noexcept { return comm_; }

    /// recv[r * bytes, (r + 1) * bytes) = rank r's send bytes, on every rank.
    void all_gather(const void* send, std::size_t bytes, void* recv) const {
        if (bytes == 0) return;
        if (bytes <= static_cast<std::size_t>(INT_MAX)) {
            check(
                MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, recv, static_cast<int>(bytes), MPI_BYTE, comm_),
                "MPI_Allgather");
            return;
        }
        // Larger than one MPI count: a strided receive type per chunk (each rank's chunk lands in its slot).
        const auto* in = static_cast<const char*>(send);
        auto* out = static_cast<char*>(recv);
        for (std::size_t at = 0; at < bytes; at += static_cast<std::size_t>(INT_MAX)) {
            const std::size_t n = std::min(bytes - at, static_cast<std::size_t>(INT_MAX));
            MPI_Datatype chunk, slot;
            check(MPI_Type_contiguous(static_cast<int>(n), MPI_BYTE, &chunk), "MPI_Type_contiguous");
            check(MPI_Type_create_resized(chunk, 0, static_cast<MPI_Aint>(bytes), &slot), "MPI_Type_create_resized");
            check(MPI_Type_commit(&slot), "MPI_Type_commit");
            const int rc = MPI_Allgather(in + at, static_cast<int>(n), MPI_BYTE, out + at, 1, slot, comm_);
            MPI_Type_free(&slot);
            MPI_Type_free(&chunk);
            check(rc, "MPI_Allgather");
        }
    }

private:
    static void check(int rc, const char* call) {
        if (rc == MPI_SUCCESS) return;
        char text[MPI_MAX_ERROR_STRING] = {0};
        int length = 0;
        MPI_Error_string(rc, text, &length);
        detail::raise(errc::communication,
                      std::string("grpo::dist::mpi_communicator: ") + call + " failed: " + std::string(text, length));
    }
    MPI_Comm comm_;
    int rank_ = 0, size_ = 1;
};

} // namespace dist
GRPO_NAMESPACE_END
