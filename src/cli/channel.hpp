// Channel: the supervisor's line to one server process, a SOCK_SEQPACKET socket pair: whole
// messages, optionally carrying a descriptor (SCM_RIGHTS: the /dev/fuse connection).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::cli {

struct Message {
  std::string text;
  int fd = -1;  // received descriptor (close-on-exec), or -1
};

// Sends one message (and `fd`, when not -1).
Result<void> send_message(int socket, const std::string& text, int fd = -1);

// Receives one message, waiting at most `timeout` (nullopt: without limit). An empty text with
// no descriptor: the other end closed.
Result<Message> receive_message(int socket, std::optional<std::chrono::milliseconds> timeout = std::nullopt);

}  // namespace ocifs::cli
