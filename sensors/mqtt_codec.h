// MQTT 3.1.1 and 5.0 packet encoding and decoding for the in-house subscriber client (internal to
// sensors/; tests include it). Pure functions over bytes: no I/O, no clocks, no allocation beyond
// the Packet's own strings. Every packet type of both versions can be encoded and decoded (the
// client only sends CONNECT, SUBSCRIBE, PUBACK, PUBREC, PUBCOMP, PINGREQ, DISCONNECT; the rest is
// there so that tests round-trip every type and a broker's packets are checked, not trusted).
//
// Decoding never trusts a length: every read is bounds-checked, and a packet that does not parse
// is reported as malformed with a reason (the client drops the connection), never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgeferry::sensors::mqtt {

// Protocol levels as CONNECT carries them.
inline constexpr uint8_t kLevel311 = 4;
inline constexpr uint8_t kLevel5 = 5;
// The largest value a Variable Byte Integer (remaining length) can hold.
inline constexpr uint32_t kMaxRemainingLength = 268'435'455;

enum class PacketType : uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,  // MQTT 5 only
};
const char* PacketTypeName(PacketType t);

// MQTT 5 property identifiers (the ones with meaning for a subscriber are used by name; every
// identifier of the spec is known to the codec so that its wire type is checked).
namespace prop {
inline constexpr uint8_t kPayloadFormatIndicator = 0x01;
inline constexpr uint8_t kMessageExpiryInterval = 0x02;
inline constexpr uint8_t kContentType = 0x03;
inline constexpr uint8_t kResponseTopic = 0x08;
inline constexpr uint8_t kCorrelationData = 0x09;
inline constexpr uint8_t kSubscriptionIdentifier = 0x0B;
inline constexpr uint8_t kSessionExpiryInterval = 0x11;
inline constexpr uint8_t kAssignedClientIdentifier = 0x12;
inline constexpr uint8_t kServerKeepAlive = 0x13;
inline constexpr uint8_t kAuthenticationMethod = 0x15;
inline constexpr uint8_t kAuthenticationData = 0x16;
inline constexpr uint8_t kRequestProblemInformation = 0x17;
inline constexpr uint8_t kWillDelayInterval = 0x18;
inline constexpr uint8_t kRequestResponseInformation = 0x19;
inline constexpr uint8_t kResponseInformation = 0x1A;
inline constexpr uint8_t kServerReference = 0x1C;
inline constexpr uint8_t kReasonString = 0x1F;
inline constexpr uint8_t kReceiveMaximum = 0x21;
inline constexpr uint8_t kTopicAliasMaximum = 0x22;
inline constexpr uint8_t kTopicAlias = 0x23;
inline constexpr uint8_t kMaximumQos = 0x24;
inline constexpr uint8_t kRetainAvailable = 0x25;
inline constexpr uint8_t kUserProperty = 0x26;
inline constexpr uint8_t kMaximumPacketSize = 0x27;
inline constexpr uint8_t kWildcardSubscriptionAvailable = 0x28;
inline constexpr uint8_t kSubscriptionIdentifierAvailable = 0x29;
inline constexpr uint8_t kSharedSubscriptionAvailable = 0x2A;
}  // namespace prop

// One MQTT 5 property. Which member holds the value follows from the identifier's wire type:
// byte / two-byte / four-byte / variable integers in `number`; UTF-8 strings and binary data in
// `value`; a user property's name in `name` and its value in `value`.
struct Property {
  uint8_t id = 0;
  uint32_t number = 0;
  std::string name;
  std::string value;
  bool operator==(const Property&) const = default;
};
using Properties = std::vector<Property>;

// The first property with `id`, or null.
const Property* FindProperty(const Properties& props, uint8_t id);

struct Subscription {
  std::string filter;
  uint8_t options = 0;  // 3.1.1: the requested QoS; 5: QoS | NL<<2 | RAP<<3 | retain handling<<4
  bool operator==(const Subscription&) const = default;
};

// A decoded (or to-be-encoded) packet. Only the members of its type are meaningful.
struct Packet {
  PacketType type = PacketType::kPingreq;
  // CONNECT
  uint8_t protocol_level = kLevel5;
  bool clean_start = false;
  uint16_t keep_alive_s = 0;
  std::string client_id;
  std::optional<std::string> username;
  std::optional<std::string> password;
  bool will = false;
  uint8_t will_qos = 0;
  bool will_retain = false;
  Properties will_properties;
  std::string will_topic;
  std::string will_payload;
  // CONNACK
  bool session_present = false;
  // CONNACK return code (3.1.1) / reason code (5) of CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP,
  // DISCONNECT, AUTH.
  uint8_t reason_code = 0;
  // PUBLISH
  bool dup = false;
  uint8_t qos = 0;
  bool retain = false;
  std::string topic;
  std::string payload;
  // PUBLISH (QoS > 0), PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
  uint16_t packet_id = 0;
  // SUBSCRIBE
  std::vector<Subscription> subscriptions;
  // UNSUBSCRIBE
  std::vector<std::string> filters;
  // SUBACK, UNSUBACK (5; 3.1.1 UNSUBACK has none)
  std::vector<uint8_t> reason_codes;
  // MQTT 5 properties of the packet
  Properties properties;
};

enum class DecodeStatus {
  kOk,         // *out holds the packet, *consumed its size in bytes
  kNeedMore,   // the bytes end before the packet does; read more and call again
  kMalformed,  // not a valid packet (*error says why); the connection must be dropped
  kTooLarge,   // the fixed header declares more than max_packet_size bytes (*consumed: full size)
};

// The fixed header at the start of `data`: type and flags byte, remaining length and the fixed
// header's own size. kNeedMore if `data` ends inside it; kMalformed for a remaining length longer
// than four bytes.
DecodeStatus DecodeFixedHeader(std::string_view data, uint8_t* first_byte, uint32_t* remaining,
                               size_t* header_size, std::string* error);

// Decodes the packet at the start of `data` for protocol level `level` (kLevel311 or kLevel5).
// `max_packet_size` bounds the whole packet (fixed header included); a larger one yields
// kTooLarge before its bytes are needed, so the caller can skip or refuse it.
DecodeStatus Decode(std::string_view data, uint8_t level, uint32_t max_packet_size, Packet* out,
                    size_t* consumed, std::string* error);

// Appends the encoding of `p` for protocol level `level` to *out. Properties are written for
// level 5 only. Returns false (appending nothing) if a field does not fit the wire format: a
// string over 65,535 bytes, a packet over kMaxRemainingLength, an unknown property identifier.
bool Encode(const Packet& p, uint8_t level, std::string* out);

// Small fixed packets the receive loop sends per message, without building a Packet.
// PUBACK / PUBREC / PUBCOMP with reason 0 (success) have the same 4 bytes in both versions.
void AppendAck(PacketType type, uint16_t packet_id, std::string* out);

// Human-readable text for a CONNACK code (3.1.1 return code or 5 reason code).
std::string ConnackReason(uint8_t level, uint8_t code);
// Human-readable text for an MQTT 5 reason code (SUBACK, DISCONNECT, ...).
std::string ReasonCodeName(uint8_t code);

}  // namespace edgeferry::sensors::mqtt
