// SPDX-License-Identifier: MIT
// grpo::error: what every validation failure throws. The message always names the function, the argument,
// what was expected and what was found, so a failing call in a large training loop explains itself.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "config.hpp"

GRPO_NAMESPACE_BEGIN

/// Machine-readable category of a grpo::error.
enum class errc : int {
    ok = 0,
    shape_mismatch, ///< extents of two arguments disagree, or an extent is negative
    invalid_value,  ///< a scalar or configuration value is outside its domain
    non_finite,     ///< NaN or Inf where a finite value is required
    aliasing,       ///< an output overlaps an input
    memory_space,   ///< a view lives in a memory space the executor cannot reach
    unsupported,    ///< a combination of options or a dtype/device that grpo does not handle
    cuda,           ///< a CUDA runtime call failed
    in_use,         ///< a workspace, pool or trainer is in use by another call on another thread
    out_of_memory,  ///< scratch memory for the call could not be allocated (or its size overflows)
    communication,  ///< a collective of a communicator failed, or another rank rejected its part of the call
    io,             ///< a file could not be created, written or read (metric sinks)
};

/// Short human name of an errc, for messages and logs.
inline const char* to_string(errc code) noexcept {
    switch (code) {
    case errc::ok: return "ok";
    case errc::shape_mismatch: return "shape mismatch";
    case errc::invalid_value: return "invalid value";
    case errc::non_finite: return "non-finite value";
    case errc::aliasing: return "aliasing";
    case errc::memory_space: return "memory space";
    case errc::unsupported: return "unsupported";
    case errc::cuda: return "cuda error";
    case errc::in_use: return "in use";
    case errc::out_of_memory: return "out of memory";
    case errc::communication: return "communication";
    case errc::io: return "i/o";
    }
    return "unknown";
}

/// The exception every grpo entry point throws for bad input. Outputs are untouched when it is thrown.
class error : public std::runtime_error {
public:
    error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
    errc code() const noexcept { return code_; }

private:
    errc code_;
};

namespace detail {

/// Throws grpo::error, or prints and aborts when exceptions are disabled.
[[noreturn]] inline void raise(errc code, const std::string& message) {
#if GRPO_HAS_EXCEPTIONS
    throw error(code, message);
#else
    std::fprintf(stderr, "grpo: %s\n", message.c_str());
    std::abort();
#endif
}

/// "grpo::where: argument 'name': expected E, got A"
[[noreturn]] inline void raise_argument(errc code, const char* where, const char* argument, const std::string& expected,
                                        const std::string& actual) {
    raise(code,
          std::string("grpo::") + where + ": argument '" + argument + "': expected " + expected + ", got " + actual);
}

} // namespace detail

GRPO_NAMESPACE_END
