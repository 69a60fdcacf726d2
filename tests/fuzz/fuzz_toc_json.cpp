// The eStargz TOC and the zstd:chunked manifest (layer/lazy_toc.hpp): JSON from the layer,
// verified against the manifest's digest but written by whoever built the image. What parses
// must keep every promise the header makes about the result, which the index and the
// ChunkedReader rely on without checking again.
//
// Input: u8 format (bit 0: zstd:chunked), u48 blob size, u48 TOC (or manifest) offset, then the
// JSON.
// libfuzzer: -max_len=262144
#include <set>
#include <string>

#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/sha256.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;
using layer::EntryKind;

namespace {

bool normalised(std::string_view path) {
  if (path.empty()) return true;
  if (path.size() > limits::kMaxPathBytes || path.find('\0') != std::string_view::npos) return false;
  for (std::size_t start = 0;;) {
    auto slash = path.find('/', start);
    auto part = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == "." || part == ".." || part.size() > limits::kMaxNameBytes) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

void check_toc(const layer::Toc& toc, std::uint64_t data_end, bool zstd) {
  check(toc.version == 1, "version {}", toc.version);
  check(toc.data_end == data_end, "data end {} instead of {}", toc.data_end, data_end);
  check(toc.entries.size() <= limits::kMaxTocEntries, "{} entries", toc.entries.size());
  const std::uint64_t ratio = zstd ? 65536 : 2048;
  std::set<std::string> paths, directories;
  std::uint64_t last_blob_offset = 0;
  for (const auto& f : toc.entries) {
    check(normalised(f.path), "path '{}'", f.path);
    check(f.mode <= 07777 && f.mtime_nsec < 1'000'000'000, "mode or mtime of '{}'", f.path);
    check(!layer::is_stargz_metadata(f.path), "metadata entry '{}' kept", f.path);
    if (f.kind == EntryKind::hardlink) {
      check(normalised(f.link_target) && paths.count(f.link_target) && !directories.count(f.link_target),
            "hard link '{}' to '{}', which no earlier non-directory entry is", f.path, f.link_target);
    }
    for (const auto& x : f.xattrs) {
      check(!x.name.empty() && x.name.size() <= limits::kMaxXattrNameBytes &&
                x.name.find('\0') == std::string::npos && x.value.size() <= limits::kMaxXattrValueBytes,
            "xattr of '{}'", f.path);
    }
    if (!f.digest.empty()) check(util::is_sha256_digest(f.digest), "digest '{}'", f.digest);
    if (f.kind != EntryKind::regular) {
      check(f.chunks.empty() && f.size == 0, "'{}' of kind {} has data", f.path, static_cast<int>(f.kind));
    } else {
      check(f.size <= limits::kMaxFileBytes, "size {}", f.size);
      check(f.size > 0 || f.chunks.empty(), "empty '{}' with chunks", f.path);
      std::uint64_t covered = 0;
      for (const auto& c : f.chunks) {
        check(c.file_offset == covered && c.size > 0 && c.size <= f.size - covered,
              "chunk at {} of {} bytes in '{}' after {} bytes", c.file_offset, c.size, f.path, covered);
        covered += c.size;
        if (c.zeros) {
          check(c.blob_offset == 0 && c.blob_end == 0, "zeros chunk with blob bytes");
          continue;
        }
        check(c.blob_offset < c.blob_end && c.blob_end <= data_end, "chunk bytes {}-{} past the data end {}",
              c.blob_offset, c.blob_end, data_end);
        check(c.blob_offset >= last_blob_offset, "chunk at blob offset {} after {}", c.blob_offset,
              last_blob_offset);
        last_blob_offset = c.blob_offset;
        const unsigned __int128 room = static_cast<unsigned __int128>(c.blob_end - c.blob_offset) * ratio;
        check(c.size <= room, "chunk of {} bytes from {} compressed", c.size, c.blob_end - c.blob_offset);
        check(c.digest.empty() || util::is_sha256_digest(c.digest), "chunk digest '{}'", c.digest);
      }
      check(covered == f.size, "chunks of '{}' cover {} of {} bytes", f.path, covered, f.size);
    }
    paths.insert(f.path);
    if (f.kind == EntryKind::directory) {
      directories.insert(f.path);
    } else {
      directories.erase(f.path);
    }
  }
  if (toc.prefetch_landmark_offset)
    check(*toc.prefetch_landmark_offset <= data_end, "landmark past the data");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const bool zstd = in.u8() & 1;
  const std::uint64_t blob_size = in.number(6);
  const std::uint64_t offset = blob_size ? in.number(6) % blob_size : in.number(6) * 0;
  const std::string_view json = in.rest();
  if (!zstd) {
    auto toc = layer::parse_estargz_toc(json, offset, blob_size, "layer fuzz");
    if (toc.ok()) check_toc(*toc, offset, false);
  } else {
    auto toc = layer::parse_zstd_chunked_manifest(json, offset, blob_size, "layer fuzz");
    if (toc.ok()) check_toc(*toc, offset - 8, true);
  }
  return 0;
}
