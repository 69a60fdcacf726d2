// eStargz / zstd:chunked TOC parsing. The blobs are built here the way the producers lay them out
// (stargz-snapshotter estargz.Writer, containers/storage compressor): real gzip members and zstd
// frames, so that every chunk range the parser derives is checked by decompressing it and
// comparing the bytes and the chunk digest.
#include <zlib.h>
#include <zstd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/layer/toc_layer.hpp"
#include "ocifs/util/sha256.hpp"

using namespace ocifs;
using layer::EntryKind;
using layer::Toc;
using layer::TocFile;
using layer::TocLimits;
using nlohmann::json;

namespace {

constexpr std::string_view kLayer = "layer sha256:feedface";

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t v = static_cast<std::uint8_t>(in[i]) << 16 | static_cast<std::uint8_t>(in[i + 1]) << 8 |
                      static_cast<std::uint8_t>(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += kAlphabet[(v >> (6 * k)) & 63];
  }
  if (in.size() - i == 1) {
    std::uint32_t v = static_cast<std::uint8_t>(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (in.size() - i == 2) {
    std::uint32_t v = static_cast<std::uint8_t>(in[i]) << 16 | static_cast<std::uint8_t>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string pseudo_random(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() % 256);
  return s;
}

// ---- gzip and tar -------------------------------------------------------------------------------

std::string gzip_member(std::string_view data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Inflates one or more whole gzip members; fails the test if the range does not end on a member
// boundary.
std::string gunzip(std::string_view data) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 31) == Z_OK);
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  char buf[65536];
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0) break;
      REQUIRE(inflateReset(&z) == Z_OK);
      continue;
    }
    REQUIRE(rc == Z_OK);
    REQUIRE((z.avail_in > 0 || z.avail_out == 0));
  }
  inflateEnd(&z);
  return out;
}

std::string tar_header(std::string_view name, std::uint64_t size, char type = '0') {
  std::string h(512, '\0');
  REQUIRE(name.size() <= 100);
  auto put = [&](std::size_t at, std::string_view v) { std::copy(v.begin(), v.end(), h.begin() + at); };
  put(0, name);
  put(100, "0000644");
  put(108, "0000000");
  put(116, "0000000");
  put(124, fmt::format("{:011o}", size));
  put(136, "00000000000");
  put(148, "        ");
  h[156] = type;
  put(257, std::string_view("ustar\0", 6));
  put(263, "00");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  put(148, fmt::format("{:06o}", sum) + std::string("\0 ", 2));
  REQUIRE(h.size() == 512);
  return h;
}

std::string tar_padding(std::uint64_t size) { return std::string((512 - size % 512) % 512, '\0'); }

std::string hex16(std::uint64_t v) { return fmt::format("{:016x}", v); }

std::string footer51(std::uint64_t toc_offset) {
  std::string f("\x1f\x8b\x08\x04\0\0\0\0\0\xff", 10);
  f += std::string("\x1a\x00", 2);
  f += std::string("SG\x16\x00", 4);
  f += hex16(toc_offset) + "STARGZ";
  f += std::string("\x01\x00\x00\xff\xff", 5);
  f += std::string(8, '\0');
  return f;
}

std::string footer47(std::uint64_t toc_offset) {
  std::string f("\x1f\x8b\x08\x04\0\0\0\0\0\xff", 10);
  f += std::string("\x16\x00", 2);
  f += hex16(toc_offset) + "STARGZ";
  f += std::string("\x01\x00\x00\xff\xff", 5);
  f += std::string(8, '\0');
  return f;
}

// ---- an eStargz writer, after stargz-snapshotter's estargz.Writer -------------------------------

struct FileSpec {
  std::string content;
  std::size_t chunk_size = 4096;
  bool share_member = false;  // MinChunkSize: the data goes on in the open member (innerOffset)
};

class EstargzWriter {
 public:
  // Every entry's tar header goes into the open member. A non-empty regular file's data (each
  // chunk of it) starts a new member, unless `share_member`.
  void add(json e, const FileSpec& spec = {}) {
    std::string type = e["type"];
    pending_ += tar_header(std::string(e["name"]), type == "reg" ? spec.content.size() : 0,
                           type == "reg"   ? '0'
                           : type == "dir" ? '5'
                                           : '2');
    if (type != "reg" || spec.content.empty()) {
      if (type == "reg") e["digest"] = digest_of("");
      entries_.push_back(e);
      return;
    }
    e["size"] = spec.content.size();
    e["digest"] = digest_of(spec.content);
    std::size_t written = 0;
    json ent = e;
    while (written < spec.content.size()) {
      std::size_t n = std::min(spec.chunk_size, spec.content.size() - written);
      if (n == spec.chunk_size) ent["chunkSize"] = n;  // the last, shorter chunk leaves it 0
      if (!spec.share_member || written > 0) close_member();
      ent["offset"] = blob_.size();
      if (!pending_.empty()) ent["innerOffset"] = pending_.size();
      if (written > 0) ent["chunkOffset"] = written;
      std::string_view chunk = std::string_view(spec.content).substr(written, n);
      ent["chunkDigest"] = digest_of(chunk);
      pending_ += chunk;
      entries_.push_back(ent);
      written += n;
      ent = json{{"name", e["name"]}, {"type", "chunk"}};
    }
    pending_ += tar_padding(spec.content.size());
  }

  json& entries() { return entries_; }

  // Closes the data, appends the TOC member and the footer; returns the blob.
  std::string finish(bool legacy = false) {
    close_member();
    toc_offset_ = blob_.size();
    toc_json_ = json{{"version", 1}, {"entries", entries_}}.dump(1, '\t');
    std::string toc = tar_header("stargz.index.json", toc_json_.size()) + toc_json_ +
                      tar_padding(toc_json_.size()) + std::string(1024, '\0');
    blob_ += gzip_member(toc);
    blob_ += legacy ? footer47(toc_offset_) : footer51(toc_offset_);
    return blob_;
  }
  std::uint64_t toc_offset() const { return toc_offset_; }
  const std::string& toc_json() const { return toc_json_; }

 private:
  void close_member() {
    if (pending_.empty()) return;
    blob_ += gzip_member(pending_);
    pending_.clear();
  }

  std::string blob_;
  std::string pending_;
  json entries_ = json::array();
  std::uint64_t toc_offset_ = 0;
  std::string toc_json_;
};

// The TOC JSON read back from a blob: footer, TOC member, tar header.
std::string read_toc(const std::string& blob, std::uint64_t& toc_offset) {
  std::string_view tail = std::string_view(blob).substr(blob.size() - std::min<std::size_t>(blob.size(), 51));
  auto footer = layer::decode_estargz_footer(bytes(tail), blob.size());
  REQUIRE(footer.ok());
  toc_offset = footer->toc_offset;
  std::string tar =
      gunzip(std::string_view(blob).substr(toc_offset, blob.size() - footer->size - toc_offset));
  REQUIRE(tar.size() >= 512);
  REQUIRE(tar.substr(0, 17) == "stargz.index.json");
  std::uint64_t size = std::stoull(tar.substr(124, 11), nullptr, 8);
  return tar.substr(512, size);
}

// ---- zstd:chunked, after containers/storage's compressor ---------------------------------------

std::string zstd_frame(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  std::size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string zstd_decompress(std::string_view data, std::size_t capacity) {
  std::string out(capacity, '\0');
  std::size_t n = ZSTD_decompress(out.data(), out.size(), data.data(), data.size());
  INFO(ZSTD_getErrorName(n));
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string le32(std::uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string skippable(std::string_view payload) {
  return std::string("\x50\x2a\x4d\x18", 4) + le32(static_cast<std::uint32_t>(payload.size())) +
         std::string(payload);
}

struct Piece {
  std::string data;
  bool zeros = false;
};

class ZstdChunkedWriter {
 public:
  // Headers go into a frame of their own, closed when a payload starts; each chunk is one frame.
  // `with_end_offset = false` writes what stargz-snapshotter's zstd:chunked writes (no endOffset,
  // no chunkType).
  explicit ZstdChunkedWriter(bool with_end_offset = true) : with_end_offset_(with_end_offset) {}

  void add(json e, const std::vector<Piece>& pieces = {}) {
    std::string type = e["type"];
    std::string content;
    for (const auto& p : pieces) content += p.data;
    pending_ += tar_header(std::string(e["name"]), content.size(), type == "reg" ? '0' : '5');
    if (type == "reg") e["size"] = content.size();
    if (content.empty()) {
      entries_.push_back(e);
      return;
    }
    flush();
    e["digest"] = digest_of(content);
    std::vector<json> out;
    std::uint64_t file_offset = 0;
    for (const auto& p : pieces) {
      json ent = out.empty() ? e : json{{"name", e["name"]}, {"type", "chunk"}};
      ent["offset"] = blob_.size();
      if (pieces.size() > 1) {
        if (file_offset) ent["chunkOffset"] = file_offset;
        ent["chunkSize"] = p.data.size();
        ent["chunkDigest"] = digest_of(p.data);
        if (p.zeros && with_end_offset_) ent["chunkType"] = "zeros";
      }
      blob_ += zstd_frame(p.data);
      file_offset += p.data.size();
      out.push_back(ent);
    }
    if (with_end_offset_) out[0]["endOffset"] = blob_.size();
    for (auto& o : out) entries_.push_back(o);
    pending_ += tar_padding(content.size());
  }

  json& entries() { return entries_; }

  std::string finish() {
    pending_ += std::string(1024, '\0');
    flush();
    manifest_json_ = json{{"version", 1}, {"entries", entries_}, {"tarSplitDigest", digest_of("ts")}}.dump();
    std::string compressed = zstd_frame(manifest_json_);
    manifest_offset_ = blob_.size() + 8;
    blob_ += skippable(compressed);
    std::string tar_split = zstd_frame("{}");
    std::uint64_t tar_split_offset = blob_.size() + 8;
    blob_ += skippable(tar_split);
    blob_ += skippable(le64(manifest_offset_) + le64(compressed.size()) + le64(manifest_json_.size()) +
                       le64(1) + le64(tar_split_offset) + le64(tar_split.size()) + le64(2) + "GNUlInUx");
    position_ = fmt::format("{}:{}:{}:1", manifest_offset_, compressed.size(), manifest_json_.size());
    return blob_;
  }
  const std::string& manifest_json() const { return manifest_json_; }
  std::uint64_t manifest_offset() const { return manifest_offset_; }
  const std::string& position() const { return position_; }

 private:
  void flush() {
    if (pending_.empty()) return;
    blob_ += zstd_frame(pending_);
    pending_.clear();
  }

  bool with_end_offset_;
  std::string blob_, pending_;
  json entries_ = json::array();
  std::string manifest_json_;
  std::uint64_t manifest_offset_ = 0;
  std::string position_;
};

// ---- checks shared by the tests -----------------------------------------------------------------

enum class Codec { gzip, zstd };

// Every chunk's range decompresses to data whose digest is the chunk's and whose bytes are the
// file's at that offset.
void check_chunk_data(const std::string& blob, const Toc& toc, Codec codec,
                      const std::map<std::string, std::string>& contents) {
  for (const auto& f : toc.entries) {
    if (f.kind != EntryKind::regular) continue;
    INFO("file " << f.path);
    auto it = contents.find(f.path);
    REQUIRE(it != contents.end());
    REQUIRE(f.size == it->second.size());
    // containers/storage leaves the digest of an empty file out.
    if (!f.digest.empty() || f.size > 0) REQUIRE(f.digest == digest_of(it->second));
    std::uint64_t covered = 0;
    for (const auto& c : f.chunks) {
      INFO("chunk at " << c.file_offset);
      REQUIRE(c.file_offset == covered);
      covered += c.size;
      std::string expected = it->second.substr(c.file_offset, c.size);
      REQUIRE(c.digest == digest_of(expected));
      REQUIRE(c.blob_offset > 0);
      REQUIRE(c.blob_end > c.blob_offset);
      REQUIRE(c.blob_end <= toc.data_end);
      std::string_view range = std::string_view(blob).substr(c.blob_offset, c.blob_end - c.blob_offset);
      std::string data =
          codec == Codec::gzip ? gunzip(range) : zstd_decompress(range, c.inner_offset + c.size + 65536);
      REQUIRE(data.size() >= c.inner_offset + c.size);
      REQUIRE(data.substr(c.inner_offset, c.size) == expected);
    }
    REQUIRE(covered == f.size);
  }
}

const TocFile& find(const Toc& toc, std::string_view path) {
  for (const auto& f : toc.entries) {
    if (f.path == path) return f;
  }
  FAIL("no entry " << path);
  throw 0;
}

bool has(const Toc& toc, std::string_view path) {
  return std::any_of(toc.entries.begin(), toc.entries.end(),
                     [&](const TocFile& f) { return f.path == path; });
}

// A layer with every kind of entry, a chunked file, shared members and the prefetch landmark.
struct SampleEstargz {
  EstargzWriter w;
  std::string blob;
  std::map<std::string, std::string> contents;

  explicit SampleEstargz(bool legacy = false) {
    contents["etc/hosts"] = "127.0.0.1 localhost\n";
    contents["bin/big"] = pseudo_random(10000, 1);
    contents["empty"] = "";
    contents["exact"] = pseudo_random(8192, 2);
    contents["small1"] = "first small file\n";
    contents["small2"] = "second small file, same gzip member\n";
    contents["after"] = pseudo_random(3000, 3);
    w.add({{"name", "./"}, {"type", "dir"}, {"mode", 0755}});
    w.add({{"name", "./etc/"},
           {"type", "dir"},
           {"mode", 040755},
           {"uid", 0},
           {"modtime", "2021-02-03T04:05:06Z"}});
    w.add({{"name", "./etc/hosts"},
           {"type", "reg"},
           {"mode", 0100644},
           {"uid", 1000},
           {"gid", 1001},
           {"userName", "u"},
           {"groupName", "g"},
           {"modtime", "2021-02-03T04:05:06Z"},
           {"xattrs",
            {{"user.a", base64("va")}, {"security.capability", base64(std::string("\0\x01\x02", 3))}}}},
          {contents["etc/hosts"]});
    w.add({{"name", "bin/big"}, {"type", "reg"}, {"mode", 04755}}, {contents["bin/big"], 4096});
    w.add({{"name", ".prefetch.landmark"}, {"type", "reg"}}, {std::string(1, '\x0f')});
    w.add({{"name", "empty"}, {"type", "reg"}, {"mode", 0600}});
    w.add({{"name", "link"}, {"type", "symlink"}, {"linkName", "../etc/hosts"}});
    w.add({{"name", "hard"}, {"type", "hardlink"}, {"linkName", "./etc/hosts"}});
    w.add({{"name", "dev/null"}, {"type", "char"}, {"devMajor", 1}, {"devMinor", 3}, {"mode", 0666}});
    w.add({{"name", "dev/sda"}, {"type", "block"}, {"devMajor", 8}, {"devMinor", 0}, {"mode", 0660}});
    w.add({{"name", "fifo"}, {"type", "fifo"}, {"mode", 0644}});
    w.add({{"name", "exact"}, {"type", "reg"}}, {contents["exact"], 4096});
    w.add({{"name", "small1"}, {"type", "reg"}}, {contents["small1"]});
    w.add({{"name", "small2"}, {"type", "reg"}}, {contents["small2"], 4096, true});
    w.add({{"name", "after"}, {"type", "reg"}}, {contents["after"], 1024});
    blob = w.finish(legacy);
  }

  Result<Toc> parse(const TocLimits& limits = {}) const {
    return layer::parse_estargz_toc(w.toc_json(), w.toc_offset(), blob.size(), kLayer, limits);
  }
  // The TOC with `edit` applied to its JSON, parsed against the same blob.
  Result<Toc> parse_edited(const std::function<void(json&)>& edit) const {
    json j = json::parse(w.toc_json());
    edit(j["entries"]);
    return layer::parse_estargz_toc(j.dump(), w.toc_offset(), blob.size(), kLayer);
  }
};

// Index in the TOC of the first entry named `name` (of `type`, if given).
std::size_t index_of(const json& entries, std::string_view name, std::string_view type = {}) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i]["name"] == name && (type.empty() || entries[i]["type"] == type)) return i;
  }
  FAIL("no TOC entry " << name);
  return 0;
}

void require_error(const Result<Toc>& r, std::string_view needle) {
  INFO("expecting an error with: " << needle);
  REQUIRE_FALSE(r.ok());
  INFO(r.error().message);
  CHECK(r.error().message.find(needle) != std::string::npos);
  CHECK(r.error().message.find(kLayer) != std::string::npos);
  CHECK((r.error().code == std::errc::io_error || r.error().code == std::errc::file_too_large));
}

}  // namespace

// ---- footers ------------------------------------------------------------------------------------

TEST_CASE("estargz footer: the 51-byte footer is an empty gzip member carrying the TOC offset") {
  std::string f = footer51(0x1234);
  REQUIRE(f.size() == layer::kEstargzFooterSize);
  // What the test writes is a valid gzip member with no content (so the layout here is right).
  CHECK(gunzip(f).empty());
  std::string blob = std::string(0x2000, 'x') + f;
  auto footer =
      layer::decode_estargz_footer(bytes(std::string_view(blob).substr(blob.size() - 51)), blob.size());
  REQUIRE(footer.ok());
  CHECK(footer->toc_offset == 0x1234);
  CHECK(footer->size == 51);
  CHECK_FALSE(footer->legacy);
  auto offset =
      layer::parse_estargz_footer(bytes(std::string_view(blob).substr(blob.size() - 51)), blob.size());
  REQUIRE(offset.ok());
  CHECK(*offset == 0x1234);
  // A longer tail works too; upper-case hex is accepted (Go's ParseInt does).
  std::string upper = std::string(0x2000, 'x') + footer51(0);
  upper.replace(upper.size() - 51 + 16, 16, "0000000000001ABC");
  auto up =
      layer::parse_estargz_footer(bytes(std::string_view(upper).substr(upper.size() - 100)), upper.size());
  REQUIRE(up.ok());
  CHECK(*up == 0x1abc);
}

TEST_CASE("estargz footer: legacy 47-byte stargz footer") {
  std::string f = footer47(0x40);
  REQUIRE(f.size() == layer::kLegacyStargzFooterSize);
  CHECK(gunzip(f).empty());
  std::string blob = std::string(0x100, 'x') + f;
  for (std::size_t tail : {std::size_t{47}, std::size_t{51}, std::size_t{200}}) {
    auto footer =
        layer::decode_estargz_footer(bytes(std::string_view(blob).substr(blob.size() - tail)), blob.size());
    REQUIRE(footer.ok());
    CHECK(footer->toc_offset == 0x40);
    CHECK(footer->size == 47);
    CHECK(footer->legacy);
  }
  // A 47..50-byte blob can only hold the legacy footer.
  std::string tiny = footer47(0);
  auto t = layer::decode_estargz_footer(bytes(tiny), tiny.size() + 1);
  REQUIRE(t.ok());
  CHECK(t->legacy);
}

TEST_CASE("estargz footer: errors") {
  std::string blob = std::string(0x100, 'x') + footer51(0x10);
  auto tail = [&](const std::string& b) { return bytes(std::string_view(b).substr(b.size() - 51)); };
  auto fails = [&](const std::string& b, std::string_view needle) {
    auto r = layer::decode_estargz_footer(tail(b), b.size());
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK(r.error().message.find(needle) != std::string::npos);
  };
  SECTION("offset at or past the footer") {
    std::string b = std::string(0x100, 'x') + footer51(0x100);
    fails(b, "not before the 51-byte footer");
    std::string far = std::string(0x100, 'x') + footer51(0xffffffffffffffff);
    fails(far, "not before");
    std::string legacy = std::string(0x100, 'x') + footer47(0x1000);
    fails(legacy, "not before the 47-byte footer");
  }
  SECTION("not hex") {
    std::string b = blob;
    b[b.size() - 51 + 20] = 'g';
    fails(b, "not 16 hex digits");
    b[b.size() - 51 + 20] = '-';
    fails(b, "not 16 hex digits");
  }
  SECTION("bad magic, flags, subfield") {
    std::string b = blob;
    b[b.size() - 51] = 0x1e;
    fails(b, "no gzip header");
    b = blob;
    b[b.size() - 51 + 3] = 0x0c;  // FEXTRA | FNAME
    fails(b, "flags");
    b = blob;
    b[b.size() - 51 + 12] = 'X';
    fails(b, "'SG'");
    b = blob;
    b.replace(b.size() - 51 + 32, 6, "STARGY");
    fails(b, "STARGZ");
    b = blob;
    b[b.size() - 51 + 14] = 21;
    fails(b, "22 bytes");
  }
  SECTION("plain gzip / not a footer at all") {
    std::string b = std::string(100, 'x') + gzip_member("hello");
    fails(b, "no gzip header");
  }
  SECTION("external TOC") {
    std::string ext("\x1f\x8b\x08\x04\0\0\0\0\0\xff", 10);
    ext += std::string("\x15\x00SG\x11\x00", 6) + "STARGZEXTERNALTOC" +
           std::string("\x01\x00\x00\xff\xff", 5) + std::string(8, '\0');
    REQUIRE(ext.size() == 46);
    CHECK(gunzip(ext).empty());
    fails(std::string(100, 'x') + ext, "separate image");
  }
  SECTION("tail too short or longer than the blob") {
    auto r = layer::decode_estargz_footer(bytes(std::string_view(blob).substr(0, 46)), blob.size());
    REQUIRE_FALSE(r.ok());
    auto r2 = layer::decode_estargz_footer(bytes(blob), 10);
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().code == std::errc::invalid_argument);
  }
}

// ---- eStargz TOC round trip ----------------------------------------------------------------------

TEST_CASE("estargz: round trip of every entry kind, chunks, landmarks") {
  SampleEstargz s;
  std::uint64_t toc_offset = 0;
  std::string toc_json = read_toc(s.blob, toc_offset);
  CHECK(toc_offset == s.w.toc_offset());
  CHECK(toc_json == s.w.toc_json());
  auto parsed = layer::parse_estargz_toc(toc_json, toc_offset, s.blob.size(), kLayer);
  INFO((parsed.ok() ? std::string() : parsed.error().message));
  REQUIRE(parsed.ok());
  const Toc& toc = *parsed;
  CHECK(toc.version == 1);
  CHECK(toc.data_end == toc_offset);

  std::vector<std::string> paths;
  for (const auto& f : toc.entries) paths.push_back(f.path);
  CHECK(paths == std::vector<std::string>{"", "etc", "etc/hosts", "bin/big", "empty", "link", "hard",
                                          "dev/null", "dev/sda", "fifo", "exact", "small1", "small2",
                                          "after"});
  CHECK_FALSE(has(toc, ".prefetch.landmark"));
  CHECK_FALSE(has(toc, "stargz.index.json"));
  for (std::size_t i = 0; i < toc.entries.size(); ++i) CHECK(toc.entries[i].toc_index >= i);

  const auto& root = find(toc, "");
  CHECK(root.kind == EntryKind::directory);
  CHECK(root.mode == 0755);
  const auto& etc = find(toc, "etc");
  CHECK(etc.kind == EntryKind::directory);
  CHECK(etc.mode == 0755);  // type bits dropped
  CHECK(etc.mtime_sec == 1612325106);

  const auto& hosts = find(toc, "etc/hosts");
  CHECK(hosts.kind == EntryKind::regular);
  CHECK(hosts.mode == 0644);
  CHECK(hosts.uid == 1000);
  CHECK(hosts.gid == 1001);
  CHECK(hosts.mtime_sec == 1612325106);
  CHECK(hosts.mtime_nsec == 0);
  REQUIRE(hosts.xattrs.size() == 2);
  std::map<std::string, std::string> xattrs;
  for (const auto& x : hosts.xattrs) xattrs[x.name] = x.value;
  CHECK(xattrs["user.a"] == "va");
  CHECK(xattrs["security.capability"] == std::string("\0\x01\x02", 3));
  REQUIRE(hosts.chunks.size() == 1);

  const auto& big = find(toc, "bin/big");
  CHECK(big.mode == 04755);
  REQUIRE(big.chunks.size() == 3);
  CHECK(big.chunks[0].size == 4096);
  CHECK(big.chunks[1].file_offset == 4096);
  CHECK(big.chunks[2].file_offset == 8192);
  CHECK(big.chunks[2].size == 10000 - 8192);
  CHECK(big.chunks[0].blob_end == big.chunks[1].blob_offset);
  CHECK(big.chunks[1].blob_end == big.chunks[2].blob_offset);

  // The landmark's member ends the previous file's last chunk, and its offset is the prefetch range.
  json entries = json::parse(toc_json)["entries"];
  std::uint64_t landmark = entries[index_of(entries, ".prefetch.landmark")]["offset"];
  REQUIRE(toc.prefetch_landmark_offset.has_value());
  CHECK(*toc.prefetch_landmark_offset == landmark);
  CHECK(big.chunks[2].blob_end == landmark);
  CHECK_FALSE(toc.no_prefetch_landmark);

  const auto& empty = find(toc, "empty");
  CHECK(empty.size == 0);
  CHECK(empty.chunks.empty());
  CHECK(empty.mode == 0600);

  const auto& link = find(toc, "link");
  CHECK(link.kind == EntryKind::symlink);
  CHECK(link.link_target == "../etc/hosts");  // as written: symlinks are never resolved
  const auto& hard = find(toc, "hard");
  CHECK(hard.kind == EntryKind::hardlink);
  CHECK(hard.link_target == "etc/hosts");
  const auto& null_dev = find(toc, "dev/null");
  CHECK(null_dev.kind == EntryKind::char_device);
  CHECK(null_dev.dev_major == 1);
  CHECK(null_dev.dev_minor == 3);
  CHECK(null_dev.mode == 0666);
  const auto& sda = find(toc, "dev/sda");
  CHECK(sda.kind == EntryKind::block_device);
  CHECK(sda.dev_major == 8);
  CHECK(sda.dev_minor == 0);
  CHECK(find(toc, "fifo").kind == EntryKind::fifo);

  const auto& exact = find(toc, "exact");
  REQUIRE(exact.chunks.size() == 2);
  CHECK(exact.chunks[1].size == 4096);

  // small2 lives in small1's member, after small1's data and its own tar header.
  const auto& s1 = find(toc, "small1");
  const auto& s2 = find(toc, "small2");
  REQUIRE(s1.chunks.size() == 1);
  REQUIRE(s2.chunks.size() == 1);
  CHECK(s2.chunks[0].blob_offset == s1.chunks[0].blob_offset);
  CHECK(s2.chunks[0].blob_end == s1.chunks[0].blob_end);
  CHECK(s1.chunks[0].inner_offset == 0);
  CHECK(s2.chunks[0].inner_offset == 512 + 512);  // small1's padded data, then small2's header

  // The last chunk of all runs up to the TOC.
  const auto& after = find(toc, "after");
  REQUIRE(after.chunks.size() == 3);
  CHECK(after.chunks.back().blob_end == toc_offset);

  check_chunk_data(s.blob, toc, Codec::gzip, s.contents);
}

TEST_CASE("estargz: legacy footer blob parses the same") {
  SampleEstargz s(true);
  std::uint64_t toc_offset = 0;
  std::string json_text = read_toc(s.blob, toc_offset);
  CHECK(toc_offset == s.w.toc_offset());
  auto toc = layer::parse_estargz_toc(json_text, toc_offset, s.blob.size(), kLayer);
  REQUIRE(toc.ok());
  check_chunk_data(s.blob, *toc, Codec::gzip, s.contents);
}

TEST_CASE("estargz: no-prefetch landmark, TOC entry and root names") {
  EstargzWriter w;
  w.add({{"name", ".no.prefetch.landmark"}, {"type", "reg"}}, {std::string(1, '\x0f')});
  w.add({{"name", "/abs/file"}, {"type", "reg"}}, {"x"});
  w.add({{"name", "stargz.index.json"}, {"type", "reg"}}, {"not the real one"});
  w.add({{"name", "sub/.prefetch.landmark"}, {"type", "reg"}}, {"only the root one is a landmark"});
  w.add({{"name", "a//b/./c/"}, {"type", "dir"}});
  std::string blob = w.finish();
  auto toc = layer::parse_estargz_toc(w.toc_json(), w.toc_offset(), blob.size(), kLayer);
  REQUIRE(toc.ok());
  CHECK(toc->no_prefetch_landmark);
  CHECK_FALSE(toc->prefetch_landmark_offset.has_value());
  std::vector<std::string> paths;
  for (const auto& f : toc->entries) paths.push_back(f.path);
  CHECK(paths == std::vector<std::string>{"abs/file", "sub/.prefetch.landmark", "a/b/c"});
  // The hidden entries' members still bound their neighbours' ranges.
  check_chunk_data(blob, *toc, Codec::gzip,
                   {{"abs/file", "x"}, {"sub/.prefetch.landmark", "only the root one is a landmark"}});
}

TEST_CASE("estargz: empty layer, unknown fields, null values, case-insensitive keys") {
  std::string blob = std::string(100, 'x') + footer51(50);
  auto empty = layer::parse_estargz_toc(R"({"version":1,"entries":[]})", 50, blob.size(), kLayer);
  REQUIRE(empty.ok());
  CHECK(empty->entries.empty());
  auto null_entries = layer::parse_estargz_toc(R"({"version":1,"entries":null,"extra":{"a":[1,{"b":2}]}})",
                                               50, blob.size(), kLayer);
  REQUIRE(null_entries.ok());
  auto odd = layer::parse_estargz_toc(
      R"({"Version":1,"Entries":[{"NAME":"d","Type":"dir","future":{"x":[1,2,{"y":null}]},"uid":null,)"
      R"("xattrs":{"user.empty":null,"user.e2":""},"linkName":null}]})",
      50, blob.size(), kLayer);
  INFO((odd.ok() ? std::string() : odd.error().message));
  REQUIRE(odd.ok());
  REQUIRE(odd->entries.size() == 1);
  CHECK(odd->entries[0].path == "d");
  REQUIRE(odd->entries[0].xattrs.size() == 2);
  CHECK(odd->entries[0].xattrs[0].value.empty());
}

TEST_CASE("estargz: RFC 3339 modtimes") {
  std::string blob = std::string(100, 'x');
  auto mtime = [&](std::string_view t) {
    json j = {{"version", 1}, {"entries", {{{"name", "d"}, {"type", "dir"}, {"modtime", t}}}}};
    return layer::parse_estargz_toc(j.dump(), 50, blob.size(), kLayer);
  };
  auto a = mtime("1970-01-01T00:00:00Z");
  REQUIRE(a.ok());
  CHECK(a->entries[0].mtime_sec == 0);
  auto b = mtime("2023-05-01T12:34:56.123456789+02:00");
  REQUIRE(b.ok());
  CHECK(b->entries[0].mtime_sec == 1682937296);
  CHECK(b->entries[0].mtime_nsec == 123456789);
  auto c = mtime("1969-12-31T23:59:59.5-00:30");
  REQUIRE(c.ok());
  CHECK(c->entries[0].mtime_sec == 1799);
  CHECK(c->entries[0].mtime_nsec == 500000000);
  auto leap = mtime("2024-02-29T00:00:00Z");
  REQUIRE(leap.ok());
  CHECK(leap->entries[0].mtime_sec == 1709164800);
  for (auto bad :
       {"2023-02-29T00:00:00Z", "2023-13-01T00:00:00Z", "2023-01-01 00:00:00Z", "2023-01-01T24:00:00Z",
        "2023-01-01T00:00:00", "2023-01-01T00:00:00.Z", "2023-01-01T00:00:00+0200", "yesterday"}) {
    INFO(bad);
    require_error(mtime(bad), "RFC 3339");
  }
}

// ---- zstd:chunked ---------------------------------------------------------------------------------

TEST_CASE("zstd:chunked: position annotation") {
  auto p = layer::parse_zstd_chunked_position("1000:200:900:1", 2000);
  REQUIRE(p.ok());
  CHECK(p->offset == 1000);
  CHECK(p->length == 200);
  CHECK(p->uncompressed_length == 900);
  for (auto bad : {"1000:200:900:2", "1000:200:900", "1000:200:900:1:5", "1000:1001:900:1", "4:10:10:1",
                   "a:1:1:1", "-1:1:1:1", "1000::900:1", "99999999999999999999:1:1:1", ""}) {
    INFO(bad);
    CHECK_FALSE(layer::parse_zstd_chunked_position(bad, 2000).ok());
  }
  TocLimits small;
  small.max_json_size = 500;
  auto big = layer::parse_zstd_chunked_position("1000:200:900:1", 2000, small);
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().code == std::errc::file_too_large);
}

namespace {

struct SampleZstd {
  ZstdChunkedWriter w;
  std::string blob;
  std::map<std::string, std::string> contents;

  explicit SampleZstd(bool with_end_offset = true) : w(with_end_offset) {
    std::vector<Piece> big = {
        {pseudo_random(5000, 7)}, {std::string(4096, '\0'), true}, {pseudo_random(3000, 8)}};
    for (const auto& p : big) contents["usr/big"] += p.data;
    contents["usr/one"] = "one frame\n";
    contents["usr/empty"] = "";
    w.add({{"name", "./"}, {"type", "dir"}, {"mode", 0755}});
    w.add({{"name", "./usr/"}, {"type", "dir"}, {"mode", 0755}, {"modtime", "2023-05-01T12:34:56.5+02:00"}});
    w.add({{"name", "./usr/big"}, {"type", "reg"}, {"mode", 0755}, {"uid", 5}, {"gid", 6}}, big);
    w.add({{"name", "./usr/one"},
           {"type", "reg"},
           {"mode", 0644},
           {"xattrs", {{"user.k", base64("v")}}},
           {"accesstime", "2023-05-01T12:34:56Z"}},
          {{contents["usr/one"]}});
    w.add({{"name", "./usr/empty"}, {"type", "reg"}, {"mode", 0644}});
    w.add({{"name", "./usr/hard"}, {"type", "hardlink"}, {"linkName", "./usr/one"}});
    w.add({{"name", "./usr/dev"}, {"type", "char"}, {"devMajor", 4}, {"devMinor", 64}});
    blob = w.finish();
  }

  Result<Toc> parse() const {
    return layer::parse_zstd_chunked_manifest(w.manifest_json(), w.manifest_offset(), blob.size(), kLayer);
  }
  Result<Toc> parse_edited(const std::function<void(json&)>& edit) const {
    json j = json::parse(w.manifest_json());
    edit(j["entries"]);
    return layer::parse_zstd_chunked_manifest(j.dump(), w.manifest_offset(), blob.size(), kLayer);
  }
};

}  // namespace

TEST_CASE("zstd:chunked: round trip from the blob, zeros chunks, endOffset") {
  SampleZstd s;
  // Find the manifest the way a reader does: the annotation, then the skippable frame.
  auto pos = layer::parse_zstd_chunked_position(s.w.position(), s.blob.size());
  REQUIRE(pos.ok());
  CHECK(s.blob.substr(pos->offset - 8, 4) == std::string("\x50\x2a\x4d\x18", 4));
  std::string manifest =
      zstd_decompress(std::string_view(s.blob).substr(pos->offset, pos->length), pos->uncompressed_length);
  CHECK(manifest == s.w.manifest_json());
  // The 64-byte footer frame at the end agrees.
  std::string footer = s.blob.substr(s.blob.size() - 64);
  CHECK(footer.substr(56) == "GNUlInUx");
  CHECK(footer.substr(0, 8) == le64(pos->offset));

  auto parsed = layer::parse_zstd_chunked_manifest(manifest, pos->offset, s.blob.size(), kLayer);
  INFO((parsed.ok() ? std::string() : parsed.error().message));
  REQUIRE(parsed.ok());
  const Toc& toc = *parsed;
  CHECK(toc.data_end == pos->offset - 8);
  std::vector<std::string> paths;
  for (const auto& f : toc.entries) paths.push_back(f.path);
  CHECK(paths ==
        std::vector<std::string>{"", "usr", "usr/big", "usr/one", "usr/empty", "usr/hard", "usr/dev"});
  CHECK(find(toc, "usr").mtime_sec == 1682937296);
  CHECK(find(toc, "usr").mtime_nsec == 500000000);

  const auto& big = find(toc, "usr/big");
  CHECK(big.uid == 5);
  CHECK(big.gid == 6);
  REQUIRE(big.chunks.size() == 3);
  CHECK_FALSE(big.chunks[0].zeros);
  CHECK(big.chunks[1].zeros);
  CHECK(big.chunks[1].size == 4096);
  CHECK_FALSE(big.chunks[2].zeros);
  // Each chunk is exactly its frame: the next frame starts where it ends; the last ends at endOffset.
  CHECK(big.chunks[0].blob_end == big.chunks[1].blob_offset);
  json entries = json::parse(manifest)["entries"];
  std::uint64_t end_offset = entries[index_of(entries, "./usr/big", "reg")]["endOffset"];
  CHECK(big.chunks[2].blob_end == end_offset);
  const auto& one = find(toc, "usr/one");
  REQUIRE(one.chunks.size() == 1);
  CHECK(one.chunks[0].digest == one.digest);  // single-frame files have no chunkDigest
  CHECK(one.chunks[0].blob_end == entries[index_of(entries, "./usr/one")]["endOffset"]);
  REQUIRE(one.xattrs.size() == 1);
  CHECK(one.xattrs[0].value == "v");
  CHECK(find(toc, "usr/empty").digest.empty());
  CHECK(find(toc, "usr/hard").link_target == "usr/one");
  CHECK(find(toc, "usr/dev").dev_minor == 64);

  check_chunk_data(s.blob, toc, Codec::zstd, s.contents);
  // With endOffset, every range is exactly one frame.
  for (const auto& c : big.chunks) {
    std::string_view frame = std::string_view(s.blob).substr(c.blob_offset, c.blob_end - c.blob_offset);
    CHECK(ZSTD_findFrameCompressedSize(frame.data(), frame.size()) == frame.size());
  }
}

TEST_CASE("zstd:chunked: stargz-snapshotter's variant without endOffset derives the ends") {
  SampleZstd s(false);
  auto toc = s.parse();
  INFO((toc.ok() ? std::string() : toc.error().message));
  REQUIRE(toc.ok());
  const auto& one = find(*toc, "usr/one");
  const auto& big = find(*toc, "usr/big");
  // Up to the next data frame (the header frames in between decode along).
  CHECK(big.chunks.back().blob_end == one.chunks[0].blob_offset);
  CHECK(one.chunks[0].blob_end == toc->data_end);
  check_chunk_data(s.blob, *toc, Codec::zstd, s.contents);
}

// ---- validation errors -----------------------------------------------------------------------------

TEST_CASE("estargz: validation errors name the layer and the entry") {
  SampleEstargz s;
  REQUIRE(s.parse().ok());
  auto edit = [&](const std::function<void(json&)>& f) { return s.parse_edited(f); };

  SECTION("unknown types") {
    require_error(edit([](json& e) { e[3]["type"] = "socket"; }), "unknown type 'socket'");
    require_error(edit([](json& e) { e[3].erase("type"); }), "no type");
    auto r = edit([&](json& e) { e[index_of(e, "bin/big", "chunk")]["chunkType"] = "hole"; });
    require_error(r, "unknown chunkType 'hole'");
    require_error(r, "'bin/big'");
  }
  SECTION("names with .. components") {
    auto r = edit([](json& e) { e[1]["name"] = "etc/../../x"; });
    require_error(r, "'..' component");
    require_error(r, "entry 1 'etc/../../x'");
    require_error(edit([](json& e) { e[1]["name"] = "../x"; }), "'..' component");
    require_error(edit([](json& e) { e[1]["name"] = ".."; }), "'..' component");
    require_error(edit([&](json& e) { e[index_of(e, "hard")]["linkName"] = "../etc/hosts"; }),
                  "'..' component");
  }
  SECTION("bad names") {
    require_error(edit([](json& e) { e[3]["name"] = std::string("a\0b", 3); }), "NUL");
    require_error(edit([](json& e) { e[3]["name"] = std::string(5000, 'a'); }), "longer than 4096");
    require_error(edit([](json& e) { e[3]["name"] = "/"; }), "names the root directory");
    require_error(edit([&](json& e) { e[index_of(e, "link")].erase("linkName"); }),
                  "symlink without linkName");
  }
  SECTION("offsets outside [0, toc offset)") {
    std::uint64_t toc = s.w.toc_offset();
    require_error(edit([&](json& e) { e[index_of(e, "after", "chunk")]["offset"] = toc; }),
                  "not before the end of the data");
    require_error(edit([&](json& e) { e[index_of(e, "after", "chunk")]["offset"] = toc + 100000; }),
                  "not before the end of the data");
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")].erase("offset"); }), "has no offset");
    require_error(edit([&](json& e) { e[index_of(e, ".prefetch.landmark")]["offset"] = toc + 1; }),
                  "past the end of the data");
  }
  SECTION("chunks out of order or overlapping in the blob") {
    // The landmark moved before bin/big's chunks: its member is earlier than theirs in the TOC.
    require_error(edit([&](json& e) {
                    std::size_t lm = index_of(e, ".prefetch.landmark");
                    std::size_t big = index_of(e, "bin/big", "reg");
                    json landmark = e[lm];
                    e.erase(lm);
                    e.insert(e.begin() + static_cast<std::ptrdiff_t>(big), landmark);
                  }),
                  "out of order");
    require_error(edit([&](json& e) { e[index_of(e, "exact")]["offset"] = 1; }), "out of order");
    // Two chunks in one member must not overlap there.
    require_error(edit([&](json& e) { e[index_of(e, "small2")]["innerOffset"] = 10; }), "overlaps");
    require_error(edit([&](json& e) { e[index_of(e, "small2")].erase("innerOffset"); }), "overlaps");
  }
  SECTION("chunks not covering the file exactly and in order") {
    require_error(edit([&](json& e) { e[index_of(e, "bin/big", "chunk")]["chunkOffset"] = 4097; }),
                  "must cover the file in order");
    require_error(edit([&](json& e) { e[index_of(e, "exact", "reg")]["size"] = 8193; }),
                  "cover only [0, 8192) of the 8193");
    require_error(edit([&](json& e) { e[index_of(e, "bin/big", "reg")]["size"] = 8000; }),
                  "past the file size");
    require_error(edit([&](json& e) { e[index_of(e, "exact", "reg")]["size"] = 4096; }),
                  "past the file size");
    require_error(edit([&](json& e) { e[index_of(e, "bin/big", "chunk")]["chunkSize"] = 999999; }),
                  "goes past the file size");
    require_error(edit([&](json& e) {
                    std::size_t i = index_of(e, "bin/big", "chunk");
                    e.erase(i);
                  }),
                  "must cover the file in order");
    // A chunk after anything but a non-empty reg.
    require_error(edit([&](json& e) {
                    e.insert(e.begin() + 2, json{{"name", "etc"}, {"type", "chunk"}, {"offset", 1}});
                  }),
                  "does not follow a non-empty reg entry");
    require_error(edit([&](json& e) {
                    std::size_t i = index_of(e, "empty");
                    e.insert(e.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                             json{{"name", "empty"}, {"type", "chunk"}, {"offset", 1}});
                  }),
                  "does not follow a non-empty reg entry");
  }
  SECTION("absurd sizes") {
    // 1 TiB cannot inflate from a few dozen bytes.
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["size"] = std::uint64_t{1} << 40; }),
                  "cannot come out of");
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["size"] = std::uint64_t{1} << 63; }),
                  "out of range");
    require_error(edit([&](json& e) { e[index_of(e, "small2")]["innerOffset"] = std::uint64_t{1} << 40; }),
                  "cannot come out of");
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["uid"] = std::uint64_t{1} << 32; }),
                  "uid 4294967296 is out of range");
    require_error(edit([&](json& e) { e[index_of(e, "dev/null")]["devMajor"] = std::uint64_t{1} << 33; }),
                  "out of range");
  }
  SECTION("entry count and JSON size limits") {
    TocLimits few;
    few.max_entries = 5;
    auto r = s.parse(few);
    require_error(r, "more than 5 entries");
    CHECK(r.error().code == std::errc::file_too_large);
    TocLimits tiny;
    tiny.max_json_size = 100;
    auto t = s.parse(tiny);
    require_error(t, "bytes of JSON (limit 100)");
    CHECK(t.error().code == std::errc::file_too_large);
  }
  SECTION("hard links") {
    require_error(edit([&](json& e) { e[index_of(e, "hard")]["linkName"] = "etc/nothing"; }),
                  "hard link to 'etc/nothing', which no earlier entry has");
    // Target only later in the TOC.
    require_error(edit([&](json& e) {
                    std::size_t h = index_of(e, "hard");
                    json link = e[h];
                    e.erase(h);
                    e.insert(e.begin() + 1, link);
                  }),
                  "no earlier entry has");
    require_error(edit([&](json& e) { e[index_of(e, "hard")]["linkName"] = "etc"; }),
                  "to the directory 'etc'");
    require_error(edit([&](json& e) { e[index_of(e, "hard")]["linkName"] = ".prefetch.landmark"; }),
                  "no earlier entry has");
    require_error(edit([&](json& e) { e[index_of(e, "hard")].erase("linkName"); }), "without linkName");
  }
  SECTION("digests") {
    std::string good = digest_of("x");
    std::string upper = good;
    std::transform(upper.begin() + 7, upper.end(), upper.begin() + 7, [](char c) { return std::toupper(c); });
    for (const std::string& bad : {upper, good.substr(0, 70), "sha512:" + good.substr(7), good.substr(7),
                                   good + "0", "sha256:" + std::string(64, 'g')}) {
      INFO(bad);
      require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["digest"] = bad; }), "lowercase hex");
      require_error(edit([&](json& e) { e[index_of(e, "bin/big", "chunk")]["chunkDigest"] = bad; }),
                    "lowercase hex");
    }
  }
  SECTION("xattrs") {
    for (std::string bad : {"!!!!", "abc", "a===", "ab=c", "=abc", "YWJj\x01"}) {
      INFO(bad);
      require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["xattrs"]["user.a"] = bad; }),
                    "xattr 'user.a' is not valid base64");
    }
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["xattrs"]["user.a"] = 5; }),
                  "not a string");
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["xattrs"] = json::array(); }),
                  "is not an object");
    require_error(edit([&](json& e) { e[index_of(e, "./etc/hosts")]["xattrs"][""] = ""; }), "bad xattr name");
    require_error(edit([&](json& e) {
                    e[index_of(e, "./etc/hosts")]["xattrs"]["user.big"] = base64(std::string(70000, 'v'));
                  }),
                  "bytes (limit 65536)");
  }
  SECTION("JSON shape and types") {
    std::uint64_t toc = s.w.toc_offset();
    auto raw = [&](std::string_view text) {
      return layer::parse_estargz_toc(text, toc, s.blob.size(), kLayer);
    };
    require_error(raw(R"({"version":1,"entries":[)"), "malformed JSON at byte");
    require_error(raw(R"({"version":1,"entries":[]} x)"), "malformed JSON");
    require_error(raw("\xff"), "malformed JSON");
    require_error(raw(R"([])"), "not a JSON object");
    require_error(raw(R"("x")"), "not a JSON object");
    require_error(raw(R"({"entries":[]})"), "no \"version\"");
    require_error(raw(R"({"version":2,"entries":[]})"), "version 2");
    require_error(raw(R"({"version":"1","entries":[]})"), "\"version\" is not an integer");
    require_error(raw(R"({"version":1,"entries":{}})"), "\"entries\" is not an array");
    require_error(raw(R"({"version":1,"entries":5})"), "\"entries\" is not an array");
    require_error(raw(R"({"version":1,"entries":[5]})"), "entry 0 is not an object");
    require_error(raw(R"({"version":1,"entries":[[]]})"), "entry 0 is not an object");
    require_error(raw(R"({"version":1,"version":1,"entries":[]})"), "appears twice");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","name":"b"}]})"),
                  "field \"name\" appears twice");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","Name":"b"}]})"), "appears twice");
    require_error(
        raw(R"({"version":1,"entries":[{"name":"a","type":"dir","xattrs":{"user.x":"","user.x":""}}]})"),
        "xattr 'user.x' appears twice");
    require_error(raw(R"({"version":1,"entries":[{"name":5,"type":"dir"}]})"), "\"name\" is not a string");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"reg","size":"5"}]})"),
                  "\"size\" is not an integer");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"reg","size":1.5}]})"),
                  "\"size\" is not an integer");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","mode":-1}]})"), "out of range");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","uid":true}]})"),
                  "\"uid\" is not an integer");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","mode":[1]}]})"),
                  "\"mode\" is not an integer");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","digest":{}}]})"),
                  "\"digest\" is not a string");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","offset":18446744073709551615}]})"),
                  "out of range");
    require_error(raw(R"({"version":1,"entries":[{"name":"a","type":"dir","offset":1e30}]})"),
                  "not an integer");
  }
  SECTION("the TOC offset itself must be inside the blob") {
    auto r = layer::parse_estargz_toc(s.w.toc_json(), s.blob.size(), s.blob.size(), kLayer);
    require_error(r, "past the");
  }
}

TEST_CASE("zstd:chunked: validation errors") {
  SampleZstd s;
  REQUIRE(s.parse().ok());
  auto edit = [&](const std::function<void(json&)>& f) { return s.parse_edited(f); };
  SECTION("endOffset past the next chunk or the data, or before the offset") {
    require_error(edit([&](json& e) {
                    auto& big = e[index_of(e, "./usr/big", "reg")];
                    big["endOffset"] = e[index_of(e, "./usr/one")]["offset"].get<std::uint64_t>() + 1;
                  }),
                  "endOffset");
    require_error(edit([&](json& e) {
                    auto& one = e[index_of(e, "./usr/one")];
                    one["endOffset"] = one["offset"];
                  }),
                  "endOffset");
    require_error(
        edit([&](json& e) { e[index_of(e, "./usr/one")]["endOffset"] = s.w.manifest_offset() - 7; }),
        "endOffset");
  }
  SECTION("frames overlapping the manifest's frame header") {
    require_error(edit([&](json& e) { e[index_of(e, "./usr/one")]["offset"] = s.w.manifest_offset() - 8; }),
                  "not before the end of the data");
  }
  SECTION("zeros chunks may be huge; data chunks may not") {
    auto r = edit([&](json& e) {
      auto& big = e[index_of(e, "./usr/big", "reg")];
      std::size_t zeros = index_of(e, "./usr/big", "chunk");
      std::uint64_t huge = std::uint64_t{1} << 50;
      e[zeros]["chunkSize"] = huge;
      e[zeros + 1]["chunkOffset"] = 5000 + huge;
      big["size"] = 5000 + huge + 3000;
    });
    INFO((r.ok() ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(find(*r, "usr/big").chunks[1].size == std::uint64_t{1} << 50);
    require_error(edit([&](json& e) {
                    std::size_t zeros = index_of(e, "./usr/big", "chunk");
                    e[zeros].erase("chunkType");
                    e[zeros]["chunkSize"] = std::uint64_t{1} << 50;
                    e[zeros + 1]["chunkOffset"] = 5000 + (std::uint64_t{1} << 50);
                    e[index_of(e, "./usr/big", "reg")]["size"] = 5000 + (std::uint64_t{1} << 50) + 3000;
                  }),
                  "cannot come out of");
  }
  SECTION("manifest offset outside the blob") {
    auto r =
        layer::parse_zstd_chunked_manifest(s.w.manifest_json(), s.blob.size() + 1, s.blob.size(), kLayer);
    require_error(r, "not inside");
    auto r2 = layer::parse_zstd_chunked_manifest(s.w.manifest_json(), 4, s.blob.size(), kLayer);
    require_error(r2, "not inside");
  }
  SECTION("messages say which format") {
    auto r = edit([&](json& e) { e[0]["type"] = "whiteout"; });
    require_error(r, "zstd:chunked manifest");
  }
}

// ---- mutations -------------------------------------------------------------------------------------

// Rounds of the mutation loop below; raise it (-DOCIFS_TOC_MUTATION_ROUNDS=...) for a longer run,
// e.g. under -fsanitize=address,undefined.
#ifndef OCIFS_TOC_MUTATION_ROUNDS
#define OCIFS_TOC_MUTATION_ROUNDS 3000
#endif

namespace {

// What any Toc that parses must satisfy.
void check_invariants(const Toc& toc) {
  const layer::TocChunk* prev = nullptr;
  for (const auto& f : toc.entries) {
    REQUIRE(f.path.size() <= 4096);
    REQUIRE(f.path != ".prefetch.landmark");
    REQUIRE(f.path != ".no.prefetch.landmark");
    REQUIRE(f.path != "stargz.index.json");
    REQUIRE(f.path.find("/../") == std::string::npos);
    REQUIRE_FALSE(f.path.starts_with("/"));
    REQUIRE_FALSE(f.path.starts_with("./"));
    REQUIRE((f.path != ".." && !f.path.starts_with("../") && !f.path.ends_with("/..")));
    REQUIRE(f.mode <= 07777);
    if (f.kind != EntryKind::regular || f.size == 0) {
      REQUIRE(f.chunks.empty());
      continue;
    }
    std::uint64_t covered = 0;
    for (const auto& c : f.chunks) {
      REQUIRE(c.file_offset == covered);
      REQUIRE(c.size > 0);
      covered += c.size;
      if (c.blob_offset == 0) {
        REQUIRE(c.zeros);
        continue;
      }
      REQUIRE(c.blob_offset < c.blob_end);
      REQUIRE(c.blob_end <= toc.data_end);
      if (prev) REQUIRE(prev->blob_offset <= c.blob_offset);
      prev = &c;
      REQUIRE((c.digest.empty() || c.digest.size() == 71));
    }
    REQUIRE(covered == f.size);
  }
}

json random_value(std::mt19937& rng, std::uint64_t near) {
  switch (rng() % 16) {
    case 0:
      return nullptr;
    case 1:
      return static_cast<std::int64_t>(rng() % 3) - 1;
    case 2:
      return rng() % 100000;
    case 3:
      return near + rng() % 64 - 32;
    case 4:
      return std::numeric_limits<std::uint64_t>::max() - rng() % 3;
    case 5:
      return std::uint64_t{1} << (rng() % 64);
    case 6:
      return 1.5;
    case 7:
      return "";
    case 8:
      return "..";
    case 9:
      return std::array<std::string, 6>{"reg", "dir", "chunk", "hardlink", "zeros", "symlink"}[rng() % 6];
    case 10:
      return digest_of(std::to_string(rng()));
    case 11:
      return json::array({1, 2});
    case 12:
      return json::object({{"user.x", "eA=="}});
    case 13:
      return "etc/hosts";
    case 14:
      return true;
    default:
      return "a/../b";
  }
}

void mutate_structure(json& entries, std::mt19937& rng, std::uint64_t near) {
  static const std::vector<std::string> kKeys = {
      "name",      "type",        "size",      "modtime",     "linkName",  "mode",   "uid",
      "gid",       "devMajor",    "devMinor",  "xattrs",      "digest",    "offset", "innerOffset",
      "endOffset", "chunkOffset", "chunkSize", "chunkDigest", "chunkType", "unknown"};
  if (entries.empty()) return;
  std::size_t i = rng() % entries.size();
  switch (rng() % 8) {
    case 0:
      entries[i].erase(kKeys[rng() % kKeys.size()]);
      break;
    case 1: {  // swap two entries
      std::size_t j = rng() % entries.size();
      std::swap(entries[i], entries[j]);
      break;
    }
    case 2:
      entries.insert(entries.begin() + static_cast<std::ptrdiff_t>(rng() % entries.size()), entries[i]);
      break;
    case 3:
      entries.erase(i);
      break;
    case 4: {  // nudge a number
      auto& e = entries[i];
      for (const char* k : {"offset", "size", "chunkOffset", "chunkSize", "innerOffset", "endOffset"}) {
        if (e.contains(k) && e[k].is_number_unsigned() && rng() % 2) {
          e[k] = e[k].get<std::uint64_t>() + rng() % 5 - 2;
        }
      }
      break;
    }
    default:
      entries[i][kKeys[rng() % kKeys.size()]] = random_value(rng, near);
      break;
  }
}

void mutate_bytes(std::string& text, std::mt19937& rng) {
  static constexpr std::string_view kAlphabet = "{}[]\",:0123456789-.eE \\nulltruefalse/.a";
  std::size_t n = 1 + rng() % 4;
  for (std::size_t k = 0; k < n && !text.empty(); ++k) {
    std::size_t at = rng() % text.size();
    switch (rng() % 4) {
      case 0:
        text[at] = kAlphabet[rng() % kAlphabet.size()];
        break;
      case 1:
        text.erase(at, 1 + rng() % 8);
        break;
      case 2:
        text.insert(at, 1, kAlphabet[rng() % kAlphabet.size()]);
        break;
      default:
        text[at] = static_cast<char>(rng() % 256);
        break;
    }
  }
}

}  // namespace

TEST_CASE("mutated TOCs parse to a valid Toc or fail cleanly") {
  SampleEstargz es;
  SampleZstd zs;
  std::mt19937 rng(20240607);
  std::size_t ok = 0, failed = 0;
  auto run = [&](bool estargz, const std::string& text) {
    auto r = estargz
                 ? layer::parse_estargz_toc(text, es.w.toc_offset(), es.blob.size(), kLayer)
                 : layer::parse_zstd_chunked_manifest(text, zs.w.manifest_offset(), zs.blob.size(), kLayer);
    if (r.ok()) {
      ++ok;
      check_invariants(*r);
    } else {
      ++failed;
      REQUIRE_FALSE(r.error().message.empty());
      REQUIRE(r.error().message.find(kLayer) != std::string::npos);
    }
  };
  for (int round = 0; round < OCIFS_TOC_MUTATION_ROUNDS; ++round) {
    bool estargz = round % 2 == 0;
    const std::string& base = estargz ? es.w.toc_json() : zs.w.manifest_json();
    std::uint64_t near = estargz ? es.w.toc_offset() : zs.w.manifest_offset();
    json j = json::parse(base);
    std::size_t n = 1 + rng() % 3;
    for (std::size_t k = 0; k < n; ++k) mutate_structure(j["entries"], rng, near);
    if (rng() % 8 == 0) j["version"] = random_value(rng, 1);
    run(estargz, j.dump());
    std::string text = base;
    mutate_bytes(text, rng);
    run(estargz, text);
  }
  // Both outcomes happen: the mutations are neither all harmless nor all fatal.
  INFO(ok << " parsed, " << failed << " refused");
  CHECK(ok > OCIFS_TOC_MUTATION_ROUNDS / 30);
  CHECK(failed > OCIFS_TOC_MUTATION_ROUNDS / 3);
  // Unmutated, both still parse.
  REQUIRE(es.parse().ok());
  REQUIRE(zs.parse().ok());
}

TEST_CASE("as_toc_spells: invalid UTF-8 bytes become U+FFFD each, as Go's encoding/json writes them") {
  using layer::as_toc_spells;
  const std::string r = "\xEF\xBF\xBD";
  CHECK(as_toc_spells("plain/ascii") == "plain/ascii");
  CHECK(as_toc_spells("caf\xC3\xA9") == "caf\xC3\xA9");                 // valid 2-byte
  CHECK(as_toc_spells("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");        // valid 4-byte
  CHECK(as_toc_spells("caf\xE9-\xFF\xFE.bin") == "caf" + r + "-" + r + r + ".bin");
  CHECK(as_toc_spells("\xC0\xAF") == r + r);                            // overlong "/"
  CHECK(as_toc_spells("\xED\xA0\x80") == r + r + r);                   // a surrogate
  CHECK(as_toc_spells("\xE2\x82") == r + r);                            // cut short
  CHECK(as_toc_spells("\xF4\x90\x80\x80") == r + r + r + r);          // past U+10FFFF
}
