// A printable dissection tree: what `ipsentry show -V` prints and what the
// TUI's detail pane shows. Each node names the bytes it describes, so a
// front end can highlight them in the hex view.
//
// Trees are built on demand for the frames a user looks at, never on the
// verification path, so they are free to allocate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/packet.hpp"

namespace ipsentry::dissect {

/// What a node stands for, where a front end needs more than its text.
enum class NodeRole : std::uint8_t {
  none,
  ipsec_header,
  spi,
  sequence,
  verdict_ok,  // an IPsec layer's verdict
  verdict_failed,
  decrypted_packet,  // the inner packet of an IPsec layer
  ike_message,
  attention,  // a line to catch the eye that is not a verdict (a capture trigger)
};

struct Node {
  std::string text;
  std::uint32_t offset = 0;  // first byte, in the frame or in buffers[buffer - 1]
  std::uint32_t length = 0;
  std::uint16_t buffer = 0;  // 0: the frame's bytes; n: the tree's n-th decrypted buffer
  NodeRole role = NodeRole::none;
  std::vector<Node> children;

  Node& add(std::string child_text, std::uint32_t child_offset, std::uint32_t child_length);
  /// A child over the same buffer as this node.
  Node& add_here(std::string child_text, std::uint32_t child_offset, std::uint32_t child_length) {
    Node& n = add(std::move(child_text), child_offset, child_length);
    n.buffer = buffer;
    return n;
  }
};

/// The first node (depth first) with `role` over `buffer`, or nullptr.
[[nodiscard]] Node* find_role(Node& root, NodeRole role, std::uint16_t buffer = 0);

struct Tree {
  Node root;
  // Bytes that are not in the frame (decrypted payloads), referred to by
  // Node::buffer.
  std::vector<std::vector<std::uint8_t>> buffers;

  /// Stores a buffer and returns its Node::buffer number.
  std::uint16_t add_buffer(Bytes bytes);
};

/// Adds the layers of a dissected packet under `parent`: link, IP with its
/// options and extension headers, transport, ESP/AH headers, NAT-T and
/// ISAKMP (whose encrypted parts are shown as such). `p.data` must be the
/// bytes of `buffer` in the tree (0 for the frame).
void add_packet_layers(const Packet& p, Node& parent, std::uint16_t buffer = 0);

/// Builds the tree of a frame: a frame node, then add_packet_layers.
void build_frame_tree(const Frame& frame, const Packet& p, Tree& out);

/// Writes the tree as indented text, one node per line.
[[nodiscard]] std::string render_tree(const Node& root, int indent = 0);

/// Hex of up to `max` bytes ("0a1b2c…"), for values shown in the tree.
[[nodiscard]] std::string hex_string(Bytes b, std::size_t max = 64);

}  // namespace ipsentry::dissect
