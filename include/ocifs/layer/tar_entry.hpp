// TarEntry: one member of a layer tar as the walker reports it, all extensions (PAX, GNU long
// names, sparse maps) already applied and the path normalised. Plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ocifs::layer {

enum class EntryKind : std::uint8_t { regular, directory, symlink, hardlink, char_device, block_device, fifo };

struct Xattr {
  std::string name;   // e.g. "security.capability", "user.foo"
  std::string value;  // raw bytes (may contain NUL)
};

// A run of real data in a sparse file; everything between runs reads as zeros. The runs' bytes
// are stored back to back in the tar from TarEntry::data_offset on.
struct SparseExtent {
  std::uint64_t offset = 0;  // logical offset in the file
  std::uint64_t length = 0;
};

struct TarEntry {
  // Normalised: no leading "/" or "./", no trailing "/", no empty or "." components; "" is the
  // root directory. Entries with a ".." component never reach the caller.
  std::string path;
  EntryKind kind = EntryKind::regular;
  std::uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (07777), no type bits
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;  // logical size of a regular file (sparse: the full size)
  std::int64_t mtime_sec = 0;
  std::uint32_t mtime_nsec = 0;
  std::string link_target;  // symlink target as written; hardlink target normalised like path
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::vector<Xattr> xattrs;  // from SCHILY.xattr.* and LIBARCHIVE.xattr.*, in header order
  std::uint64_t data_offset = 0;  // offset of the data in the decoded layer stream
  std::uint64_t stored_size = 0;  // bytes of data stored in the tar (sparse: sum of extents)
  std::vector<SparseExtent> sparse;  // empty unless the entry is a sparse file
  std::uint64_t header_offset = 0;   // where the entry's first header starts (for messages)
};

}  // namespace ocifs::layer
