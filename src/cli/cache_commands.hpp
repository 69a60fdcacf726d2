// `ocifs cache ls|du|gc`: show and trim the cache directory. Registered on the CLI11 app by
// add_cache_command(); run_cache() runs whichever leaf was chosen and returns the exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

namespace ocifs::cli {

struct CacheCommand {
  CLI::App* cache = nullptr;  // "cache"; test `*cache` after parsing
  CLI::App* ls = nullptr;
  CLI::App* du = nullptr;
  CLI::App* gc = nullptr;
  std::string cache_dir;  // empty: Cache::default_root()
  std::string cache_max;  // empty: default_cache_max(); "0": unlimited
};

// Adds "cache" with its subcommands and their options to `app`. The result must outlive parsing.
std::unique_ptr<CacheCommand> add_cache_command(CLI::App& app);
int run_cache(const CacheCommand& command);

}  // namespace ocifs::cli
