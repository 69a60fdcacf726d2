// TocBuilder: the entries of a lazy-pull TOC, checked one at a time as the JSON parser
// (toc_json.cpp) delivers them, then as a whole, into a Toc (lazy_toc.hpp): names normalised,
// types, ids, times, links, xattrs and digests checked; chunks in file and blob order, their
// compressed ranges worked out and bounded by what the format can inflate. One object per parse,
// on the parsing thread; not synchronised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/util/result.hpp"
#include "toc_entry.hpp"

namespace ocifs::layer::toc {

class TocBuilder {
 public:
  // `data_end`: where the data frames/members end (the TOC's or the manifest frame's offset).
  // `layer` names the layer in messages and must outlive the builder.
  TocBuilder(Format format, std::uint64_t data_end, std::string_view layer, std::size_t max_entries);

  // Entry number `index` of the TOC: a file, or a chunk of the regular file before it.
  Result<void> add(const RawEntry& e, std::size_t index);
  // After the last entry: the checks across entries, then the Toc.
  Result<Toc> finish(int version);

  // "cannot parse <format> of <layer>: entry <index> '<name>': <reason>"
  Error fail(std::size_t index, std::string_view name, std::string_view reason) const;
  // "cannot parse <format> of <layer>: <reason>"
  Error fail_toc(std::string_view reason) const;

 private:
  Result<void> add_chunk(const RawEntry& e, std::size_t index);
  Result<void> close_file();
  // Sets the target of `f` (a symlink or hard link) from `link`; why not, if it is refused.
  std::optional<std::string> take_link(TocFile& f, const std::string& link) const;
  std::string chunk_name(std::size_t file, const TocChunk& c) const;

  Format format_;
  std::uint64_t data_end_;
  std::string_view layer_;
  std::vector<TocFile> files_;
  std::vector<bool> hidden_;                         // per file: stargz.index.json or a landmark
  std::vector<std::uint64_t> end_offsets_;           // per file: `endOffset`, 0 if none
  bool open_reg_ = false;                            // files_.back() is a regular file taking chunks
  std::uint64_t covered_ = 0;                        // bytes of it covered by chunks so far
  std::unordered_map<std::string, EntryKind> seen_;  // paths so far, for hard link targets
  std::optional<std::uint64_t> prefetch_landmark_;
  bool no_prefetch_landmark_ = false;
};

}  // namespace ocifs::layer::toc
