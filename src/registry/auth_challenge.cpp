#include "ocifs/registry/auth_challenge.hpp"
#include "ocifs/util/text.hpp"

#include <algorithm>
#include <cctype>

namespace ocifs::registry {

namespace {

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token68_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("-._~+/").find(c) != std::string_view::npos;
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  std::vector<AuthChallenge> run() {
    std::vector<AuthChallenge> out;
    while (true) {
      skip_separators();
      if (pos_ >= s_.size()) break;
      auto scheme = token();
      if (scheme.empty()) {
        ++pos_;  // a stray character: skip it
        continue;
      }
      AuthChallenge challenge{util::ascii_lower(scheme), {}, {}};
      if (!try_token68(challenge)) params(challenge);
      out.push_back(std::move(challenge));
    }
    return out;
  }

 private:
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  void skip_separators() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == ',')) ++pos_;
  }
  std::string_view token() {
    auto start = pos_;
    while (pos_ < s_.size() && is_tchar(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }

  // "Scheme token68" where token68 = 1*(ALPHA / DIGIT / "-._~+/") *"=", followed by the end or ','.
  bool try_token68(AuthChallenge& challenge) {
    auto save = pos_;
    skip_ws();
    if (pos_ == save) return false;  // a token68 is separated from the scheme by a space
    auto start = pos_;
    while (pos_ < s_.size() && is_token68_char(s_[pos_])) ++pos_;
    if (pos_ == start) {
      pos_ = save;
      return false;
    }
    while (pos_ < s_.size() && s_[pos_] == '=') ++pos_;
    auto end = pos_;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] != ',') {
      pos_ = save;  // "realm=..." and the like: parameters, not a token68
      return false;
    }
    challenge.token68 = std::string(s_.substr(start, end - start));
    return true;
  }

  // auth-param *( OWS "," OWS auth-param ); stops before a token that is not followed by '='
  // (the scheme of the next challenge).
  void params(AuthChallenge& challenge) {
    while (true) {
      auto save = pos_;
      skip_separators();
      auto name = token();
      skip_ws();
      if (name.empty() || pos_ >= s_.size() || s_[pos_] != '=') {
        pos_ = save;
        return;
      }
      ++pos_;  // '='
      skip_ws();
      std::string value;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        ++pos_;
        while (pos_ < s_.size() && s_[pos_] != '"') {
          if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_;
          value += s_[pos_++];
        }
        if (pos_ < s_.size()) ++pos_;  // closing quote (a missing one ends the value at the end)
      } else {
        // A token, leniently: anything up to a separator (some servers leave URLs unquoted).
        while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != ' ' && s_[pos_] != '\t')
          value += s_[pos_++];
      }
      challenge.params.insert_or_assign(util::ascii_lower(name), std::move(value));
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string AuthChallenge::param(std::string_view name) const {
  auto it = params.find(std::string(name));
  return it == params.end() ? std::string() : it->second;
}

std::vector<AuthChallenge> AuthChallenge::parse(std::string_view header) { return Parser(header).run(); }

std::vector<AuthChallenge> AuthChallenge::parse_all(const std::vector<std::string_view>& headers) {
  std::vector<AuthChallenge> out;
  for (auto h : headers) {
    auto part = parse(h);
    out.insert(out.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return out;
}

}  // namespace ocifs::registry
