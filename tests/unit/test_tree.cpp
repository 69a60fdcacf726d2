// The merged tree: OCI layer rules as a table of small layer stacks.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "ocifs/image/tree_builder.hpp"

using namespace ocifs;
using layer::EntryKind;

namespace {

layer::TarEntry entry(std::string path, EntryKind kind = EntryKind::regular, std::uint32_t mode = 0644) {
  layer::TarEntry e;
  e.path = std::move(path);
  e.kind = kind;
  e.mode = mode;
  return e;
}
layer::TarEntry dir(std::string path, std::uint32_t mode = 0755) { return entry(std::move(path), EntryKind::directory, mode); }
layer::TarEntry file(std::string path, std::uint64_t size = 1, std::uint64_t offset = 0) {
  auto e = entry(std::move(path));
  e.size = size;
  e.data_offset = offset;
  return e;
}
layer::TarEntry link_entry(std::string path, std::string target, EntryKind kind = EntryKind::hardlink) {
  auto e = entry(std::move(path), kind, 0777);
  e.link_target = std::move(target);
  return e;
}

image::Tree build(const std::vector<std::vector<layer::TarEntry>>& layers) {
  image::TreeBuilder builder;
  std::vector<layer::LayerIndex> indexes(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    for (const auto& e : layers[i]) indexes[i].add(e);
    REQUIRE(builder.apply_layer(static_cast<std::uint16_t>(i), indexes[i]));
  }
  return std::move(builder).build();
}

// Every path in the tree, "dir/" for directories, sorted.
std::vector<std::string> paths(const image::Tree& tree) {
  std::vector<std::string> out;
  std::vector<std::pair<std::uint32_t, std::string>> stack{{image::Tree::kRootIndex, ""}};
  while (!stack.empty()) {
    auto [index, prefix] = stack.back();
    stack.pop_back();
    for (const auto& d : tree.children(tree.inode(index))) {
      std::string p = prefix + std::string(tree.str(d.name));
      bool is_dir = tree.inode(d.inode).is_dir();
      out.push_back(is_dir ? p + "/" : p);
      if (is_dir) stack.push_back({d.inode, p + "/"});
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

const image::Inode& at(const image::Tree& tree, std::string_view path) {
  auto index = tree.resolve(path);
  REQUIRE(index);
  return tree.inode(*index);
}

using Paths = std::vector<std::string>;

}  // namespace

TEST_CASE("upper files replace lower ones; directories merge with upper metadata") {
  auto tree = build({
      {dir("etc"), file("etc/a", 1, 100), file("etc/b"), dir("opt", 0700)},
      {dir("etc", 0750), file("etc/a", 2, 200), dir("opt/x")},
  });
  CHECK(paths(tree) == Paths{"etc/", "etc/a", "etc/b", "opt/", "opt/x/"});
  CHECK((at(tree, "etc").mode & 07777) == 0750);
  CHECK(at(tree, "etc/a").size == 2);
  CHECK(at(tree, "etc/a").layer == 1);
  CHECK(at(tree, "etc/a").data_offset == 200);
  CHECK(at(tree, "etc/b").layer == 0);
  CHECK((at(tree, "opt").mode & 07777) == 0700);
}

TEST_CASE("whiteouts hide lower entries and whole subtrees, never their own layer") {
  auto tree = build({
      {dir("a"), file("a/f"), dir("a/sub"), file("a/sub/g"), file("keep"), file("gone")},
      {file(".wh.gone"), file("a/.wh.sub"), file("a/.wh.f"), file("a/f"), file(".wh.missing")},
  });
  CHECK(paths(tree) == Paths{"a/", "a/f", "keep"});
  CHECK(at(tree, "a/f").layer == 1);  // re-created in the layer that whited it out
}

TEST_CASE("opaque directories hide lower children whatever the entry order") {
  auto tree = build({
      {dir("d"), file("d/old"), dir("d/olddir"), file("d/olddir/x"), file("other")},
      {file("d/new"), file("d/.wh..wh..opq"), dir("d/newdir")},
  });
  CHECK(paths(tree) == Paths{"d/", "d/new", "d/newdir/", "other"});
}

TEST_CASE("opaque marker without a directory entry still makes the directory") {
  auto tree = build({{file("x")}, {file("x/.wh..wh..opq")}});
  CHECK(paths(tree) == Paths{"x/"});
}

TEST_CASE("files replace directories and directories replace files across layers") {
  auto tree = build({
      {dir("p"), file("p/child"), file("q")},
      {file("p", 5), dir("q"), file("q/inside")},
  });
  CHECK(paths(tree) == Paths{"p", "q/", "q/inside"});
  CHECK(at(tree, "p").size == 5);
}

TEST_CASE("hard links share an inode, also into lower layers") {
  auto tree = build({
      {file("bin/tool", 10, 512)},
      {link_entry("bin/alias", "bin/tool"), file("lib/x"), link_entry("lib/y", "lib/x")},
  });
  auto tool = tree.resolve("bin/tool");
  auto alias = tree.resolve("bin/alias");
  REQUIRE(tool);
  REQUIRE(alias);
  CHECK(*tool == *alias);
  CHECK(at(tree, "bin/tool").nlink == 2);
  CHECK(at(tree, "bin/alias").data_offset == 512);
  CHECK(*tree.resolve("lib/x") == *tree.resolve("lib/y"));
}

TEST_CASE("replacing or whiting out one name of a hard-link group leaves the others alone") {
  auto tree = build({
      {file("a", 3, 10), link_entry("b", "a"), link_entry("c", "a")},
      {file("b", 7, 99), file(".wh.c")},
  });
  CHECK(paths(tree) == Paths{"a", "b"});
  CHECK(at(tree, "a").nlink == 1);
  CHECK(at(tree, "a").size == 3);
  CHECK(at(tree, "b").size == 7);
  CHECK(*tree.resolve("a") != *tree.resolve("b"));
}

TEST_CASE("a whiteout entry that is itself a hard link still whites out") {
  auto wh = link_entry(".wh.victim", "somewhere");
  auto tree = build({{file("victim"), file("somewhere")}, {wh}});
  CHECK(paths(tree) == Paths{"somewhere"});
}

TEST_CASE("hard links to missing targets or directories are skipped") {
  auto tree = build({{dir("d"), link_entry("l1", "nope"), link_entry("l2", "d")}});
  CHECK(paths(tree) == Paths{"d/"});
}

TEST_CASE("implicit parents, later duplicates, AUFS metadata and the root entry") {
  auto root = dir("", 0700);
  root.uid = 5;
  auto tree = build({
      {root, file("x/y/z", 1), file("dup", 1), file("dup", 2), file(".wh..wh.plnk"), dir(".wh..wh.orph")},
  });
  CHECK(paths(tree) == Paths{"dup", "x/", "x/y/", "x/y/z"});
  CHECK(at(tree, "x").mode == (S_IFDIR | 0755));
  CHECK(at(tree, "x").uid == 0);
  CHECK(at(tree, "dup").size == 2);
  CHECK((at(tree, "").mode & 07777) == 0700);
  CHECK(at(tree, "").uid == 5);
}

TEST_CASE("attributes, symlinks, devices and directory link counts") {
  auto sym = link_entry("lnk", "../target/of/some/length", EntryKind::symlink);
  auto dev = entry("null", EntryKind::char_device, 0666);
  dev.dev_major = 1;
  dev.dev_minor = 3;
  auto suid = file("su");
  suid.mode = 04755;
  suid.mtime_sec = 1700000000;
  suid.mtime_nsec = 123456789;
  suid.xattrs = {{"security.capability", std::string("\0\0\0\2", 4)}, {"user.k", "v"}};
  auto tree = build({{dir("a"), dir("a/b"), dir("a/c"), sym, dev, suid}});
  CHECK(at(tree, "lnk").mode == (S_IFLNK | 0777));
  CHECK(tree.str(at(tree, "lnk").link) == "../target/of/some/length");
  CHECK(at(tree, "lnk").size == 24);
  CHECK(at(tree, "null").mode == (S_IFCHR | 0666));
  CHECK(at(tree, "null").dev_major == 1);
  CHECK(at(tree, "null").dev_minor == 3);
  CHECK(at(tree, "su").mode == (S_IFREG | 04755));
  CHECK(at(tree, "su").mtime_nsec == 123456789);
  auto x = tree.xattrs(at(tree, "su"));
  REQUIRE(x.size() == 2);
  CHECK(tree.str(x[0].value) == std::string("\0\0\0\2", 4));
  CHECK(at(tree, "a").nlink == 4);
  CHECK(at(tree, "").nlink == 3);
  CHECK(*tree.resolve("a/b/..") == *tree.resolve("a"));
}

TEST_CASE("a symlink is 0777 whatever mode its tar header carries, as Linux shows it") {
  auto narrow = link_entry("narrow", "target", EntryKind::symlink);
  narrow.mode = 0755;
  auto none = link_entry("none", "target", EntryKind::symlink);
  none.mode = 0;
  auto odd = link_entry("odd", "target", EntryKind::symlink);
  odd.mode = 07644;
  auto tree = build({{file("target"), narrow, none, odd}});
  for (auto name : {"narrow", "none", "odd"}) {
    INFO(name);
    CHECK(at(tree, name).mode == (S_IFLNK | 0777));
  }
  CHECK(at(tree, "target").mode == (S_IFREG | 0644));
}

TEST_CASE("inode numbers are the same on every build of the same layers") {
  std::vector<std::vector<layer::TarEntry>> layers = {
      {dir("z"), file("z/1"), dir("a"), file("a/2"), file("m")},
      {file("a/3"), file(".wh.m"), link_entry("z/l", "a/2")},
  };
  auto one = build(layers);
  auto two = build(layers);
  REQUIRE(one.inode_count() == two.inode_count());
  for (const char* p : {"z/1", "a/2", "a/3", "z/l"}) CHECK(*one.resolve(p) == *two.resolve(p));
  // breadth-first over sorted names: a < z at the top level
  CHECK(*one.resolve("a") == 1);
  CHECK(*one.resolve("z") == 2);
}
