// SPDX-License-Identifier: MIT
// Data-parallel grpo: the communicator concept and the entry points whose results equal the one-process
// results on the whole batch (docs/distributed.md). Transports: <grpo/adapters/mpi.hpp>,
// <grpo/adapters/c10d.hpp>, <grpo/adapters/nccl.hpp>.
#pragma once

#include "dist/communicator.hpp"
#include "dist/data_parallel.hpp"
#include "dist/device_data_parallel.hpp"
