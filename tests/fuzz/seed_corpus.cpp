// seed_corpus RAW OUT: each fuzz target's seed corpus, written to OUT/<target>/ from the raw
// material tests/fuzz/make_seeds.py made with the integration tests' fixture builders (layer
// tars, gzip and zstd blobs, image documents, archives). Formats that are ocifs's own (layer
// and seek indexes, chunk maps, cache records) come from ocifs's own writers, run on that
// material; eStargz and zstd:chunked blobs are laid out here as their producers lay them out.
// Each seed starts with the parameters its target reads (see the target's header comment).
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sstream>
#include <string>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/cache/chunk_map.hpp"
#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/layer/shared_index.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/util/base64.hpp"
#include "ocifs/util/sha256.hpp"

namespace fs = std::filesystem;
using namespace ocifs;
using nlohmann::json;

namespace {

using Files = std::vector<std::pair<std::string, std::string>>;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "seed_corpus: %s\n", why.c_str());
  std::exit(1);
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The files of RAW/<dir>, by name, sorted.
Files files(const fs::path& raw, const char* dir) {
  Files out;
  for (const auto& e : fs::directory_iterator(raw / dir))
    out.emplace_back(e.path().filename().string(), read(e.path()));
  std::sort(out.begin(), out.end());
  return out;
}

fs::path g_out;

void put(const std::string& target, const std::string& name, std::string_view bytes) {
  fs::create_directories(g_out / target);
  std::ofstream(g_out / target / name, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le(std::uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::uint64_t le_get(std::string_view s, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  return v;
}

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

std::string gzip(std::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) die("deflateInit2");
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) die("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string zstd(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  auto n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (ZSTD_isError(n)) die("ZSTD_compress");
  out.resize(n);
  return out;
}

std::string skippable_frame(std::string_view payload) {
  return le(0x184D2A50, 4) + le(payload.size(), 4) + std::string(payload);
}

// A tar's entries, each with the bytes of its headers and its data.
struct Member {
  layer::TarEntry entry;
  std::uint64_t headers_from = 0;  // where its headers (and those of skipped entries before it) start
};

std::vector<Member> members(const std::string& tar) {
  compress::IdentityDecoder decoder(std::make_shared<io::MemorySource>(tar, "tar"), compress::ScanOptions{});
  layer::TarWalker walker(decoder, "seed");
  std::vector<Member> out;
  std::uint64_t pos = 0;
  for (;;) {
    auto e = walker.next();
    if (!e.ok()) die("a fixture tar does not walk: " + e.error().message);
    if (!*e) break;
    out.push_back({std::move(**e), pos});
    pos = (out.back().entry.data_offset + out.back().entry.stored_size + 511) / 512 * 512;
  }
  return out;
}

const char* toc_type(layer::EntryKind k) {
  switch (k) {
    case layer::EntryKind::regular:
      return "reg";
    case layer::EntryKind::directory:
      return "dir";
    case layer::EntryKind::symlink:
      return "symlink";
    case layer::EntryKind::hardlink:
      return "hardlink";
    case layer::EntryKind::char_device:
      return "char";
    case layer::EntryKind::block_device:
      return "block";
    case layer::EntryKind::fifo:
      return "fifo";
  }
  return "reg";
}

json toc_entry(const layer::TarEntry& e) {
  json j{{"name", e.path}, {"type", toc_type(e.kind)},         {"mode", e.mode}, {"uid", e.uid},
         {"gid", e.gid},   {"modtime", "2020-01-01T00:00:00Z"}};
  if (!e.link_target.empty()) j["linkName"] = e.link_target;
  if (e.kind == layer::EntryKind::char_device || e.kind == layer::EntryKind::block_device) {
    j["devMajor"] = e.dev_major;
    j["devMinor"] = e.dev_minor;
  }
  if (!e.xattrs.empty()) {
    json x = json::object();
    for (const auto& a : e.xattrs) x[a.name] = util::base64_encode(a.value);
    j["xattrs"] = x;
  }
  return j;
}

// A ustar archive of one regular file, with its end-of-archive blocks.
std::string tar_of(const std::string& name, const std::string& data) {
  std::string header(512, '\0');
  std::snprintf(header.data(), 100, "%s", name.c_str());
  std::snprintf(header.data() + 100, 8, "%07o", 0644);
  std::snprintf(header.data() + 108, 8, "%07o", 0);
  std::snprintf(header.data() + 116, 8, "%07o", 0);
  std::snprintf(header.data() + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
  std::snprintf(header.data() + 136, 12, "%011o", 0);
  header[156] = '0';
  std::memcpy(header.data() + 257,
              "ustar\0"
              "00",
              8);
  std::memset(header.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  std::snprintf(header.data() + 148, 8, "%06o", sum);
  return header + data + std::string((512 - data.size() % 512) % 512, '\0') + std::string(1024, '\0');
}

struct LazyBlob {
  std::string blob;
  std::string toc_json;
  std::uint64_t toc_offset = 0;  // eStargz: the TOC member; zstd:chunked: the compressed manifest
  std::uint64_t toc_length = 0;  // zstd:chunked: the compressed manifest's length
};

constexpr std::size_t kChunk = 4096;

// What both lazy layouts do with a tar: each member's headers go to `headers` (with a sparse
// member's data: a TOC cannot say what a sparse file is, so it is left out of it); every other
// member gets a TOC entry, and a regular file with data is handed, with its entry, to
// `lay_out_data`, which writes its chunks and their entries; its padding follows in `headers`.
json toc_entries(const std::string& tar, std::string& headers,
                 const std::function<void(json entry, const std::string& data, json& entries)>& lay_out_data) {
  json entries = json::array();
  for (const auto& m : members(tar)) {
    const auto& e = m.entry;
    headers += tar.substr(m.headers_from, e.data_offset - m.headers_from);
    if (!e.sparse.empty()) {
      headers += tar.substr(e.data_offset, (e.stored_size + 511) / 512 * 512);
      continue;
    }
    json j = toc_entry(e);
    if (e.kind != layer::EntryKind::regular || e.stored_size == 0) {
      if (e.kind == layer::EntryKind::regular) j["size"] = 0;
      entries.push_back(j);
      continue;
    }
    const std::string data = tar.substr(e.data_offset, e.stored_size);
    j["size"] = data.size();
    j["digest"] = digest_of(data);
    lay_out_data(std::move(j), data, entries);
    headers += std::string((512 - data.size() % 512) % 512, '\0');
  }
  return entries;
}

// eStargz (stargz-snapshotter's layout): tar headers in the open gzip member, each regular
// file's data (each 4 KiB chunk of it) starting a member of its own; then the TOC member and the
// 51-byte footer. Sparse files are left out of the TOC, as a TOC cannot say what they are.
LazyBlob estargz(const std::string& tar) {
  LazyBlob out;
  std::string pending;
  auto close_member = [&] {
    if (!pending.empty()) out.blob += gzip(pending);
    pending.clear();
  };
  json entries = toc_entries(tar, pending, [&](json j, const std::string& data, json& toc) {
    for (std::size_t at = 0; at < data.size(); at += kChunk) {
      close_member();
      json c = at == 0 ? j : json{{"name", j["name"]}, {"type", "chunk"}};
      const std::string piece = data.substr(at, kChunk);
      c["offset"] = out.blob.size();
      if (at > 0) c["chunkOffset"] = at;
      if (data.size() > kChunk) c["chunkSize"] = piece.size();
      c["chunkDigest"] = digest_of(piece);
      pending += piece;
      toc.push_back(c);
    }
  });
  close_member();
  out.toc_json = json{{"version", 1}, {"entries", entries}}.dump(-1, ' ', false, json::error_handler_t::replace);
  out.toc_offset = out.blob.size();
  out.blob += gzip(tar_of("stargz.index.json", out.toc_json));
  // Footer: an empty gzip member whose Extra field holds "%016x" TOC offset + "STARGZ".
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(out.toc_offset));
  out.blob += std::string("\x1f\x8b\x08\x04\0\0\0\0\0\xff", 10) + le(26, 2) + "SG" + le(22, 2) + hex +
              "STARGZ" + std::string("\x01\x00\x00\xff\xff", 5) + std::string(8, '\0');
  return out;
}

// zstd:chunked (containers/storage's layout): tar headers in a frame closed when data starts,
// each regular file's data one frame per 4 KiB chunk, the manifest zstd-compressed in a
// skippable frame, the tar-split and the 64-byte footer in two more.
LazyBlob zstd_chunked(const std::string& tar) {
  LazyBlob out;
  std::string pending;
  auto flush = [&] {
    if (!pending.empty()) out.blob += zstd(pending);
    pending.clear();
  };
  json entries = toc_entries(tar, pending, [&](json j, const std::string& data, json& toc) {
    flush();
    std::vector<json> chunks;
    for (std::size_t at = 0; at < data.size(); at += kChunk) {
      json c = at == 0 ? j : json{{"name", j["name"]}, {"type", "chunk"}};
      const std::string piece = data.substr(at, kChunk);
      c["offset"] = out.blob.size();
      if (data.size() > kChunk) {
        if (at > 0) c["chunkOffset"] = at;
        c["chunkSize"] = piece.size();
        c["chunkDigest"] = digest_of(piece);
      }
      out.blob += zstd(piece);
      chunks.push_back(c);
    }
    chunks[0]["endOffset"] = out.blob.size();
    for (auto& c : chunks) toc.push_back(c);
  });
  pending += std::string(1024, '\0');
  flush();
  out.toc_json = json{{"version", 1}, {"entries", entries}}.dump(-1, ' ', false, json::error_handler_t::replace);
  const std::string compressed = zstd(out.toc_json);
  out.toc_offset = out.blob.size() + 8;
  out.toc_length = compressed.size();
  out.blob += skippable_frame(compressed);
  const std::string tar_split = zstd("{}");
  const std::uint64_t tar_split_offset = out.blob.size() + 8;
  out.blob += skippable_frame(tar_split);
  out.blob +=
      skippable_frame(le(out.toc_offset, 8) + le(compressed.size(), 8) + le(out.toc_json.size(), 8) +
                      le(1, 8) + le(tar_split_offset, 8) + le(tar_split.size(), 8) + le(2, 8) + "GNUlInUx");
  return out;
}

// The index ocifs's verified scan makes of a blob, through a scratch cache.
std::optional<layer::LayerIndex> scan(const std::string& blob, const cache::Cache& cache) {
  layer::LayerBlob layer{
      .blob = std::make_shared<io::MemorySource>(blob, "seed"), .digest = digest_of(blob), .name = "seed"};
  auto index = layer::scan_layer(layer, cache);
  if (!index.ok()) return std::nullopt;
  return std::move(index).value();
}

// Reads for the decoder targets: u8 N, N x (u32 offset, u16 length), u8 gzip span.
std::string reads_header(std::uint64_t decoded) {
  std::string h = le(4, 1);
  for (std::uint64_t offset :
       {std::uint64_t{0}, decoded / 3, decoded / 2 + 1000, decoded > 100 ? decoded - 100 : 0}) {
    h += le(offset, 4) + le(5000, 2);
  }
  return h + le(0, 1);
}

// Compressible text: the decoded size of a seed that gets gzip checkpoints with states.
std::string text(std::size_t size) {
  std::string out;
  for (std::size_t i = 0; out.size() < size; ++i)
    out += "line " + std::to_string(i * 7919 % 100003) + " of the layer\n";
  out.resize(size);
  return out;
}


}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) die("usage: seed_corpus RAW OUT");
  spdlog::set_level(spdlog::level::off);  // the hostile fixtures make the walker warn
  const fs::path raw = argv[1];
  g_out = argv[2];
  const fs::path scratch = g_out / ".scratch";
  fs::remove_all(scratch);
  auto cache = cache::Cache::open(scratch);
  if (!cache.ok()) die(cache.error().message);

  const Files tars = files(raw, "tar"), gzips = files(raw, "gzip"), zstds = files(raw, "zstd");
  const Files documents = files(raw, "documents"), docker = files(raw, "docker_archive");
  const Files archives = files(raw, "archives");
  // The fixtures' first edge-case layer: PAX, xattrs, a sparse file, long names, several files.
  auto edge_it = std::find_if(tars.begin(), tars.end(), [](const auto& f) { return f.first == "edge0.tar"; });
  if (edge_it == tars.end()) die("no edge0.tar among the raw tars");
  const std::string& edge = edge_it->second;

  // Tars as they are; the docker-archive and oci-archive images.
  for (const auto& [name, tar] : tars) {
    put("tar_walker", name, tar);
    put("tar_libarchive", name, tar);
  }
  for (const auto& [name, bytes] : archives) {
    put("archive_image", name, le(name.starts_with("oci") ? 1 : 2, 1) + bytes);
  }
  for (const auto& [name, bytes] : docker) put("docker_archive_manifest", name, bytes);

  // Blobs for the decoders: the fixtures' gzip and zstd layers, libzstd's single and multi-frame
  // forms, a gzip of two members, and compressible layers large enough for gzip checkpoints.
  Files gzip_blobs = gzips, zstd_blobs = zstds;
  const std::string big = tar_of("big.txt", text(3u << 20));
  gzip_blobs.emplace_back("big.tar.gz", gzip(big));
  gzip_blobs.emplace_back("members.tar.gz", gzip(edge.substr(0, 4096)) + gzip(edge.substr(4096)));
  zstd_blobs.emplace_back("big.tar.zst", zstd(big));
  for (const auto& [name, tar] : tars) {
    zstd_blobs.emplace_back(name + ".zst", zstd(tar));
    std::string frames;
    for (std::size_t at = 0; at < tar.size(); at += 8192) frames += zstd(tar.substr(at, 8192));
    zstd_blobs.emplace_back(name + ".frames.zst", frames + skippable_frame("seekable"));
  }
  for (auto [target, blobs] :
       {std::pair{"gzip_reader", &gzip_blobs}, std::pair{"zstd_reader", &zstd_blobs}}) {
    for (const auto& [name, blob] : *blobs) {
      if (blob.size() > (128u << 10)) continue;
      put(target, name, reads_header(1u << 16) + blob);
    }
  }

  // ocifs's own formats, written by its scan: layer indexes and seek indexes of every blob.
  const Files* all_blobs[] = {&tars, &gzip_blobs, &zstd_blobs};
  for (const Files* blobs : all_blobs) {
    for (const auto& [name, blob] : *blobs) {
      auto index = scan(blob, *cache);
      if (!index) continue;
      const std::string bytes = index->serialize();
      if (bytes.size() <= (1u << 20)) put("layer_index", name + ".idx", bytes);
      const std::string seek = index->seek_index().serialize();
      if (seek.size() <= (256u << 10)) put("seek_index", name + ".seek", seek);
      // Its shared form as fuzz_shared_index takes it: the head's payload decoded, then the states.
      layer::SharedIndexOptions share;
      share.checkpoint_spacing = layer::kMinCheckpointSpacing;
      const std::uint64_t decoded = index->seek_index().decoded_size;
      if (decoded > 1) share.read_first = {{decoded / 2, (decoded + 1) / 2 - 1, 1}, {0, 1, 0}};
      if (auto shared = layer::build_shared_index(*index, share); shared && shared->bytes.size() >= 32) {
        const std::string& b = shared->bytes;
        const std::uint64_t unpacked = le_get(b, 24), listed = le_get(b, 12) & 0xffffffffu;
        std::string payload(static_cast<std::size_t>(unpacked), '\0');
        const std::size_t n = ZSTD_decompress(payload.data(), payload.size(), b.data() + 32, shared->head_size - 32);
        if (!ZSTD_isError(n) && n == unpacked && listed <= 255 && listed * 28 <= unpacked &&
            payload.size() + b.size() <= (1u << 20)) {
          const std::size_t index_bytes = payload.size() - static_cast<std::size_t>(listed * 28);
          put("shared_index", name + ".shx",
              le(index_bytes, 8) + std::string(1, static_cast<char>(listed)) + payload + b.substr(shared->head_size));
        }
      }
    }
  }

  // Chunk maps and the blob entries over them: empty, partly and wholly present, one byte.
  for (std::uint64_t size :
       {std::uint64_t{1}, std::uint64_t{256} << 10, (std::uint64_t{1} << 20) + 1, std::uint64_t{4} << 20}) {
    cache::ChunkMap map(size);
    for (std::uint64_t c = 0; c < map.chunk_count(); c += 2) {
      map.set(c);
      map.set_last_use(c, 1700000000 + static_cast<std::uint32_t>(c));
    }
    const std::string bytes = map.serialize();
    put("chunk_map", std::to_string(size) + ".map", bytes);
    put("blob_entry", std::to_string(size) + ".map", le(size - 1, 4) + le(0, 1) + bytes);
    put("blob_entry", std::to_string(size) + ".budget.map", le(size - 1, 4) + le(3, 1) + bytes);
  }

  // Cache records: an access record, a ref, documents.
  put("cache_records", "access", le(0, 1) + "ocifs-access 1\n0\n17\n4294967295\n");
  put("cache_records", "ref", le(1, 1) + digest_of("manifest"));
  for (const auto& [name, bytes] : documents) put("cache_records", name, le(2, 1) + bytes);

  // Documents: a multi-platform index, a manifest, a config, as one image.
  std::map<std::string, std::string> doc;
  for (const auto& [name, bytes] : documents) doc[name.substr(0, name.find('.'))] = bytes;
  auto docs = [&](std::initializer_list<const char*> names) {
    std::string out = le(0, 1) + le(names.size() - 1, 1);
    std::size_t i = 0;
    for (const char* n : names) {
      const std::string& d = doc.at(n);
      out += ++i < names.size() ? le(d.size(), 2) + d : d;
    }
    return out;
  };
  put("documents", "oci", docs({"manifest-oci", "config-oci"}));
  put("documents", "multi", docs({"index-multi", "manifest-oci", "config-oci"}));
  put("documents", "docker", docs({"index-docker", "manifest-docker", "config-oci"}));
  put("documents", "layout", docs({"index-oci", "manifest-oci", "config-oci", "layout-oci"}));
  put("documents", "schema1", docs({"manifest-schema1"}));

  // eStargz and zstd:chunked layers of the fixture tars, their TOCs and footers, and chunk
  // tables over their members.
  for (const auto& [name, tar] : tars) {
    const LazyBlob e = estargz(tar);
    const LazyBlob z = zstd_chunked(tar);
    if (e.blob.size() <= (256u << 10)) {
      put("toc_layer", name + ".estargz", le(0, 1) + le(0, 4) + le(0, 4) + e.blob);
      put("toc_footer", name + ".footer",
          le(0, 1) + le(e.blob.size() - 51, 5) + e.blob.substr(e.blob.size() - 51));
    }
    if (z.blob.size() <= (256u << 10)) {
      put("toc_layer", name + ".zstd", le(1, 1) + le(z.toc_offset, 4) + le(z.toc_length, 4) + z.blob);
      put("toc_layer", name + ".zstd-both", le(5, 1) + le(z.toc_offset, 4) + le(z.toc_length, 4) + z.blob);
    }
    put("toc_json", name + ".estargz", le(0, 1) + le(e.blob.size(), 6) + le(e.toc_offset, 6) + e.toc_json);
    put("toc_json", name + ".zstd", le(1, 1) + le(z.blob.size(), 6) + le(z.toc_offset, 6) + z.toc_json);
    put("toc_footer", name + ".position",
        le(1, 1) + le(z.blob.size(), 5) +
            fmt::format("{}:{}:{}:1", z.toc_offset, z.toc_length, z.toc_json.size()));
  }

  // Chunk tables for the ChunkedReader: the files of a fixture tar as gzip members and zstd
  // frames, one chunk each, then a hole. See fuzz_chunked_reader.cpp for the layout.
  for (int codec = 0; codec < 2; ++codec) {
    std::string blob, table;
    int n = 0;
    for (const auto& m : members(edge)) {
      const auto& e = m.entry;
      if (e.kind != layer::EntryKind::regular || e.stored_size == 0 || !e.sparse.empty() || n == 14) continue;
      const std::string data = edge.substr(e.data_offset, e.stored_size);
      const std::string unit = codec ? zstd(data) : gzip(data);
      table += le(blob.size(), 4) + le(unit.size() - 1, 2) + le(0, 2) + le(data.size() - 1, 4) + le(0, 1);
      blob += unit;
      ++n;
    }
    table += le(0, 4) + le(0, 2) + le(0, 2) + le(4095, 4) + le(1, 1);  // a hole of 1 MiB
    ++n;
    std::string reads =
        le(3, 1) + le(0, 4) + le(4096, 2) + le(100, 4) + le(60000, 2) + le(5000, 4) + le(10, 2);
    put("chunked_reader", codec ? "zstd" : "gzip", le(codec, 1) + le(n, 1) + table + reads + blob);
  }

  fs::remove_all(scratch);
  return 0;
}
