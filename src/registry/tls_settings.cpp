#include "ocifs/registry/tls_settings.hpp"

#include <curl/curl.h>
#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

namespace ocifs::registry {

namespace {

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return util::errno_error(errno == 0 ? EIO : errno, fmt::format("cannot read CA certificate {}", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// libcurl's built-in CA bundle (CURLINFO_CAINFO, libcurl >= 7.84), else Debian's.
std::string default_ca_bundle() {
  std::string path = "/etc/ssl/certs/ca-certificates.crt";
  if (CURL* h = curl_easy_init()) {
    char* info = nullptr;
    if (curl_easy_getinfo(h, CURLINFO_CAINFO, &info) == CURLE_OK && info && *info) path = info;
    curl_easy_cleanup(h);
  }
  return path;
}

}  // namespace

Result<TlsSettings> TlsSettings::load(std::string_view host, std::string_view alias,
                                      std::string_view certs_dirs, bool verify) {
  TlsSettings tls;
  tls.verify = verify;
  std::string extra_cas;
  std::vector<std::string> names{std::string(host)};
  if (!alias.empty() && alias != host) names.emplace_back(alias);
  std::string_view rest = certs_dirs;
  while (!rest.empty()) {
    auto colon = rest.find(':');
    std::string base(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (base.empty()) continue;
    for (const auto& name : names) {
      std::string dir = base + "/" + name;
      for (const auto& file : list_dir(dir)) {
        std::string path = dir + "/" + file;
        if (file.ends_with(".crt")) {
          OCIFS_ASSIGN(auto pem, read_text(path));
          extra_cas += pem;
          if (!extra_cas.ends_with('\n')) extra_cas += '\n';
          tls.files.push_back(path);
        } else if (file.ends_with(".cert") && tls.client_cert.empty()) {
          std::string key = dir + "/" + file.substr(0, file.size() - 5) + ".key";
          std::ifstream probe(key);
          if (!probe) {
            return make_error(std::errc::invalid_argument,
                              "cannot use client certificate {}: its key {} is missing", path, key);
          }
          tls.client_cert = path;
          tls.client_key = key;
          tls.files.push_back(path);
        }
      }
    }
  }
  if (!extra_cas.empty()) {
    // A CA blob replaces libcurl's bundle: put the system bundle first so both are trusted.
    std::string bundle_path = default_ca_bundle();
    std::ifstream bundle(bundle_path, std::ios::binary);
    if (bundle) {
      std::ostringstream s;
      s << bundle.rdbuf();
      tls.ca_pem = s.str();
      if (!tls.ca_pem.empty() && !tls.ca_pem.ends_with('\n')) tls.ca_pem += '\n';
    }
    tls.ca_pem += extra_cas;
  }
  return tls;
}

}  // namespace ocifs::registry
