#include "sensors/mqtt_codec.h"

#include <fmt/format.h>

namespace edgeferry::sensors::mqtt {
namespace {

enum class WireType { kUnknown, kByte, kTwo, kFour, kVarint, kString, kBinary, kPair };

WireType PropertyType(uint8_t id) {
  switch (id) {
    case prop::kPayloadFormatIndicator:
    case prop::kRequestProblemInformation:
    case prop::kRequestResponseInformation:
    case prop::kMaximumQos:
    case prop::kRetainAvailable:
    case prop::kWildcardSubscriptionAvailable:
    case prop::kSubscriptionIdentifierAvailable:
    case prop::kSharedSubscriptionAvailable:
      return WireType::kByte;
    case prop::kServerKeepAlive:
    case prop::kReceiveMaximum:
    case prop::kTopicAliasMaximum:
    case prop::kTopicAlias:
      return WireType::kTwo;
    case prop::kMessageExpiryInterval:
    case prop::kSessionExpiryInterval:
    case prop::kWillDelayInterval:
    case prop::kMaximumPacketSize:
      return WireType::kFour;
    case prop::kSubscriptionIdentifier:
      return WireType::kVarint;
    case prop::kContentType:
    case prop::kResponseTopic:
    case prop::kAssignedClientIdentifier:
    case prop::kAuthenticationMethod:
    case prop::kResponseInformation:
    case prop::kServerReference:
    case prop::kReasonString:
      return WireType::kString;
    case prop::kCorrelationData:
    case prop::kAuthenticationData:
      return WireType::kBinary;
    case prop::kUserProperty:
      return WireType::kPair;
    default:
      return WireType::kUnknown;
  }
}

// Well-formed UTF-8 without U+0000 and without surrogates (MQTT 5 1.5.4, 3.1.1 1.5.3).
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += static_cast<size_t>(len);
  }
  return true;
}

// Bounds-checked reader over one packet's remaining bytes. Every getter returns false (and sets
// the error once) when the bytes run out or the value is invalid.
class Reader {
 public:
  explicit Reader(std::string_view d) : d_(d) {}
  size_t left() const { return d_.size() - pos_; }
  bool Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  const std::string& error() const { return error_; }

  bool U8(uint8_t* v, const char* what) {
    if (left() < 1) return Fail(fmt::format("truncated {}", what));
    *v = static_cast<uint8_t>(d_[pos_++]);
    return true;
  }
  bool U16(uint16_t* v, const char* what) {
    if (left() < 2) return Fail(fmt::format("truncated {}", what));
    *v = static_cast<uint16_t>((static_cast<uint8_t>(d_[pos_]) << 8) |
                               static_cast<uint8_t>(d_[pos_ + 1]));
    pos_ += 2;
    return true;
  }
  bool U32(uint32_t* v, const char* what) {
    if (left() < 4) return Fail(fmt::format("truncated {}", what));
    *v = 0;
    for (int i = 0; i < 4; ++i) *v = (*v << 8) | static_cast<uint8_t>(d_[pos_++]);
    return true;
  }
  bool Varint(uint32_t* v, const char* what) {
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      uint8_t b;
      if (!U8(&b, what)) return false;
      value |= static_cast<uint32_t>(b & 0x7F) << (7 * i);
      if ((b & 0x80) == 0) {
        *v = value;
        return true;
      }
    }
    return Fail(fmt::format("{}: variable byte integer longer than 4 bytes", what));
  }
  bool Binary(std::string* v, const char* what) {
    uint16_t len;
    if (!U16(&len, what)) return false;
    if (left() < len) return Fail(fmt::format("truncated {} ({} bytes declared)", what, len));
    v->assign(d_.data() + pos_, len);
    pos_ += len;
    return true;
  }
  bool Utf8(std::string* v, const char* what) {
    if (!Binary(v, what)) return false;
    if (!ValidUtf8(*v)) return Fail(fmt::format("{} is not valid UTF-8", what));
    return true;
  }
  void Rest(std::string* v) {
    v->assign(d_.data() + pos_, left());
    pos_ = d_.size();
  }
  bool Properties(Properties* out, const char* what) {
    uint32_t len;
    if (!Varint(&len, what)) return false;
    if (len > left()) return Fail(fmt::format("{}: length {} beyond the packet", what, len));
    Reader r(d_.substr(pos_, len));
    pos_ += len;
    out->clear();
    while (r.left() > 0) {
      uint32_t id32;
      if (!r.Varint(&id32, "property identifier")) return Fail(r.error());
      Property p;
      p.id = static_cast<uint8_t>(id32);
      WireType type = id32 > 0xFF ? WireType::kUnknown : PropertyType(p.id);
      bool ok = false;
      switch (type) {
        case WireType::kUnknown:
          return Fail(fmt::format("{}: unknown property identifier 0x{:02x}", what, id32));
        case WireType::kByte: {
          uint8_t b;
          ok = r.U8(&b, "property value");
          p.number = b;
          break;
        }
        case WireType::kTwo: {
          uint16_t v;
          ok = r.U16(&v, "property value");
          p.number = v;
          break;
        }
        case WireType::kFour:
          ok = r.U32(&p.number, "property value");
          break;
        case WireType::kVarint:
          ok = r.Varint(&p.number, "property value");
          break;
        case WireType::kString:
          ok = r.Utf8(&p.value, "property string");
          break;
        case WireType::kBinary:
          ok = r.Binary(&p.value, "property data");
          break;
        case WireType::kPair:
          ok = r.Utf8(&p.name, "user property name") && r.Utf8(&p.value, "user property value");
          break;
      }
      if (!ok) return Fail(fmt::format("{}: {}", what, r.error()));
      out->push_back(std::move(p));
    }
    return true;
  }
  bool End(const char* what) {
    if (left() != 0) return Fail(fmt::format("{}: {} unexpected trailing bytes", what, left()));
    return true;
  }

 private:
  std::string_view d_;
  size_t pos_ = 0;
  std::string error_;
};

// Writer helpers. Strings over 65,535 bytes make the whole encode fail.
struct Writer {
  std::string out;
  bool ok = true;
  void U8(uint8_t v) { out.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v & 0xFF));
  }
  void U32(uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
  }
  void Varint(uint32_t v) {
    if (v > kMaxRemainingLength) {
      ok = false;
      return;
    }
    do {
      uint8_t b = v & 0x7F;
      v >>= 7;
      if (v) b |= 0x80;
      U8(b);
    } while (v);
  }
  void Str(std::string_view s) {
    if (s.size() > 0xFFFF) {
      ok = false;
      return;
    }
    U16(static_cast<uint16_t>(s.size()));
    out.append(s);
  }
  void Props(const Properties& props) {
    Writer w;
    for (const auto& p : props) {
      w.Varint(p.id);
      switch (PropertyType(p.id)) {
        case WireType::kUnknown:
          ok = false;
          return;
        case WireType::kByte:
          w.U8(static_cast<uint8_t>(p.number));
          break;
        case WireType::kTwo:
          w.U16(static_cast<uint16_t>(p.number));
          break;
        case WireType::kFour:
          w.U32(p.number);
          break;
        case WireType::kVarint:
          w.Varint(p.number);
          break;
        case WireType::kString:
        case WireType::kBinary:
          w.Str(p.value);
          break;
        case WireType::kPair:
          w.Str(p.name);
          w.Str(p.value);
          break;
      }
    }
    ok = ok && w.ok;
    Varint(static_cast<uint32_t>(w.out.size()));
    out += w.out;
  }
};

uint8_t FixedFlags(const Packet& p) {
  switch (p.type) {
    case PacketType::kPublish:
      return static_cast<uint8_t>((p.dup ? 0x08 : 0) | ((p.qos & 3) << 1) | (p.retain ? 1 : 0));
    case PacketType::kPubrel:
    case PacketType::kSubscribe:
    case PacketType::kUnsubscribe:
      return 0x02;
    default:
      return 0;
  }
}

// Acks (PUBACK, PUBREC, PUBREL, PUBCOMP) share one layout.
bool DecodeAck(Reader& r, uint8_t level, uint32_t remaining, Packet* out) {
  if (!r.U16(&out->packet_id, "packet identifier")) return false;
  if (out->packet_id == 0) return r.Fail("packet identifier 0");
  if (level == kLevel5) {
    if (remaining >= 3 && !r.U8(&out->reason_code, "reason code")) return false;
    if (remaining >= 4 && !r.Properties(&out->properties, "properties")) return false;
  }
  return r.End(PacketTypeName(out->type));
}

bool DecodeBody(Reader& r, uint8_t flags, uint8_t level, uint32_t remaining, Packet* out) {
  const bool v5 = level == kLevel5;
  switch (out->type) {
    case PacketType::kConnect: {
      std::string name;
      uint8_t cflags;
      if (!r.Utf8(&name, "protocol name") || !r.U8(&out->protocol_level, "protocol level")) {
        return false;
      }
      if (name != "MQTT") return r.Fail("protocol name is not MQTT");
      if (out->protocol_level != kLevel311 && out->protocol_level != kLevel5) {
        return r.Fail(fmt::format("protocol level {} is not 4 or 5", out->protocol_level));
      }
      const bool c5 = out->protocol_level == kLevel5;
      if (!r.U8(&cflags, "connect flags") || !r.U16(&out->keep_alive_s, "keep alive")) {
        return false;
      }
      if (cflags & 0x01) return r.Fail("reserved connect flag set");
      out->clean_start = cflags & 0x02;
      out->will = cflags & 0x04;
      out->will_qos = (cflags >> 3) & 3;
      out->will_retain = cflags & 0x20;
      if (out->will_qos == 3) return r.Fail("will QoS 3");
      if (!out->will && (out->will_qos || out->will_retain))
        return r.Fail("will flags without will");
      if (c5 && !r.Properties(&out->properties, "properties")) return false;
      if (!r.Utf8(&out->client_id, "client identifier")) return false;
      if (out->will) {
        if (c5 && !r.Properties(&out->will_properties, "will properties")) return false;
        if (!r.Utf8(&out->will_topic, "will topic") ||
            !r.Binary(&out->will_payload, "will payload")) {
          return false;
        }
      }
      if (cflags & 0x80) {
        out->username.emplace();
        if (!r.Utf8(&*out->username, "user name")) return false;
      }
      if (cflags & 0x40) {
        out->password.emplace();
        if (!r.Binary(&*out->password, "password")) return false;
      }
      return r.End("CONNECT");
    }
    case PacketType::kConnack: {
      uint8_t ack;
      if (!r.U8(&ack, "acknowledge flags") || !r.U8(&out->reason_code, "reason code")) {
        return false;
      }
      if (ack & 0xFE) return r.Fail("reserved CONNACK flags set");
      out->session_present = ack & 1;
      if (v5 && !r.Properties(&out->properties, "properties")) return false;
      return r.End("CONNACK");
    }
    case PacketType::kPublish: {
      out->dup = flags & 0x08;
      out->qos = (flags >> 1) & 3;
      out->retain = flags & 1;
      if (out->qos == 3) return r.Fail("PUBLISH with QoS 3");
      if (out->qos == 0 && out->dup) return r.Fail("PUBLISH QoS 0 with DUP set");
      if (!r.Utf8(&out->topic, "topic name")) return false;
      if (out->topic.find_first_of("+#") != std::string::npos) {
        return r.Fail("topic name contains a wildcard");
      }
      out->packet_id = 0;
      if (out->qos > 0) {
        if (!r.U16(&out->packet_id, "packet identifier")) return false;
        if (out->packet_id == 0) return r.Fail("packet identifier 0");
      }
      if (v5 && !r.Properties(&out->properties, "properties")) return false;
      if (out->topic.empty() && !(v5 && FindProperty(out->properties, prop::kTopicAlias))) {
        return r.Fail("empty topic name");
      }
      r.Rest(&out->payload);
      return true;
    }
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return DecodeAck(r, level, remaining, out);
    case PacketType::kSubscribe: {
      if (!r.U16(&out->packet_id, "packet identifier")) return false;
      if (out->packet_id == 0) return r.Fail("packet identifier 0");
      if (v5 && !r.Properties(&out->properties, "properties")) return false;
      if (r.left() == 0) return r.Fail("SUBSCRIBE without a topic filter");
      while (r.left() > 0) {
        Subscription s;
        if (!r.Utf8(&s.filter, "topic filter") || !r.U8(&s.options, "subscription options")) {
          return false;
        }
        if ((s.options & 3) == 3) return r.Fail("subscription QoS 3");
        if (v5 ? ((s.options & 0xC0) || ((s.options >> 4) & 3) == 3) : (s.options & 0xFC)) {
          return r.Fail("reserved subscription option bits set");
        }
        out->subscriptions.push_back(std::move(s));
      }
      return true;
    }
    case PacketType::kSuback:
    case PacketType::kUnsuback: {
      if (!r.U16(&out->packet_id, "packet identifier")) return false;
      if (v5 && !r.Properties(&out->properties, "properties")) return false;
      if (out->type == PacketType::kUnsuback && !v5) return r.End("UNSUBACK");
      std::string codes;
      r.Rest(&codes);
      if (codes.empty())
        return r.Fail(fmt::format("{} without reason codes", PacketTypeName(out->type)));
      out->reason_codes.assign(codes.begin(), codes.end());
      return true;
    }
    case PacketType::kUnsubscribe: {
      if (!r.U16(&out->packet_id, "packet identifier")) return false;
      if (out->packet_id == 0) return r.Fail("packet identifier 0");
      if (v5 && !r.Properties(&out->properties, "properties")) return false;
      if (r.left() == 0) return r.Fail("UNSUBSCRIBE without a topic filter");
      while (r.left() > 0) {
        std::string f;
        if (!r.Utf8(&f, "topic filter")) return false;
        out->filters.push_back(std::move(f));
      }
      return true;
    }
    case PacketType::kPingreq:
    case PacketType::kPingresp:
      return r.End(PacketTypeName(out->type));
    case PacketType::kDisconnect:
    case PacketType::kAuth:
      if (out->type == PacketType::kAuth && !v5) return r.Fail("AUTH is MQTT 5 only");
      if (v5) {
        if (remaining >= 1 && !r.U8(&out->reason_code, "reason code")) return false;
        if (remaining >= 2 && !r.Properties(&out->properties, "properties")) return false;
      }
      return r.End(PacketTypeName(out->type));
  }
  return r.Fail("unknown packet type");
}

}  // namespace

const char* PacketTypeName(PacketType t) {
  static const char* const kNames[] = {"reserved(0)", "CONNECT",  "CONNACK",     "PUBLISH",
                                       "PUBACK",      "PUBREC",   "PUBREL",      "PUBCOMP",
                                       "SUBSCRIBE",   "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                       "PINGREQ",     "PINGRESP", "DISCONNECT",  "AUTH"};
  auto i = static_cast<size_t>(t);
  return i < 16 ? kNames[i] : "?";
}

const Property* FindProperty(const Properties& props, uint8_t id) {
  for (const auto& p : props) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

DecodeStatus DecodeFixedHeader(std::string_view data, uint8_t* first_byte, uint32_t* remaining,
                               size_t* header_size, std::string* error) {
  if (data.empty()) return DecodeStatus::kNeedMore;
  *first_byte = static_cast<uint8_t>(data[0]);
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (1 + i >= data.size()) return DecodeStatus::kNeedMore;
    auto b = static_cast<uint8_t>(data[1 + i]);
    value |= static_cast<uint32_t>(b & 0x7F) << (7 * i);
    if ((b & 0x80) == 0) {
      *remaining = value;
      *header_size = 2 + i;
      return DecodeStatus::kOk;
    }
  }
  *error = "remaining length longer than 4 bytes";
  return DecodeStatus::kMalformed;
}

DecodeStatus Decode(std::string_view data, uint8_t level, uint32_t max_packet_size, Packet* out,
                    size_t* consumed, std::string* error) {
  uint8_t first;
  uint32_t remaining;
  size_t header;
  DecodeStatus st = DecodeFixedHeader(data, &first, &remaining, &header, error);
  if (st != DecodeStatus::kOk) return st;
  const uint64_t total = header + static_cast<uint64_t>(remaining);
  const uint8_t type = first >> 4;
  const uint8_t flags = first & 0x0F;
  if (type == 0 || (type == 15 && level != kLevel5)) {
    *error = fmt::format("reserved packet type {}", type);
    return DecodeStatus::kMalformed;
  }
  Packet tmp;
  tmp.type = static_cast<PacketType>(type);
  uint8_t want = FixedFlags(tmp);
  if (tmp.type != PacketType::kPublish && flags != want) {
    *error = fmt::format("{} with fixed-header flags 0x{:x} (must be 0x{:x})",
                         PacketTypeName(tmp.type), flags, want);
    return DecodeStatus::kMalformed;
  }
  if (total > max_packet_size) {
    *consumed = static_cast<size_t>(total);
    return DecodeStatus::kTooLarge;
  }
  if (data.size() < total) return DecodeStatus::kNeedMore;
  // Reuse the caller's strings' capacity for the hot PUBLISH path.
  out->type = tmp.type;
  out->properties.clear();
  out->reason_code = 0;
  out->packet_id = 0;
  out->subscriptions.clear();
  out->filters.clear();
  out->reason_codes.clear();
  out->username.reset();
  out->password.reset();
  out->will_properties.clear();
  out->session_present = false;
  out->dup = out->retain = false;
  out->qos = 0;
  Reader r(data.substr(header, remaining));
  if (!DecodeBody(r, flags, level, remaining, out)) {
    *error = fmt::format("malformed {}: {}", PacketTypeName(out->type), r.error());
    return DecodeStatus::kMalformed;
  }
  *consumed = static_cast<size_t>(total);
  return DecodeStatus::kOk;
}

bool Encode(const Packet& p, uint8_t level, std::string* out) {
  const bool v5 = level == kLevel5;
  Writer w;
  switch (p.type) {
    case PacketType::kConnect: {
      w.Str("MQTT");
      w.U8(level);
      uint8_t f = static_cast<uint8_t>((p.clean_start ? 0x02 : 0) | (p.will ? 0x04 : 0) |
                                       ((p.will_qos & 3) << 3) | (p.will_retain ? 0x20 : 0) |
                                       (p.password ? 0x40 : 0) | (p.username ? 0x80 : 0));
      w.U8(f);
      w.U16(p.keep_alive_s);
      if (v5) w.Props(p.properties);
      w.Str(p.client_id);
      if (p.will) {
        if (v5) w.Props(p.will_properties);
        w.Str(p.will_topic);
        w.Str(p.will_payload);
      }
      if (p.username) w.Str(*p.username);
      if (p.password) w.Str(*p.password);
      break;
    }
    case PacketType::kConnack:
      w.U8(p.session_present ? 1 : 0);
      w.U8(p.reason_code);
      if (v5) w.Props(p.properties);
      break;
    case PacketType::kPublish:
      w.Str(p.topic);
      if (p.qos > 0) w.U16(p.packet_id);
      if (v5) w.Props(p.properties);
      w.out += p.payload;
      break;
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      w.U16(p.packet_id);
      if (v5 && (p.reason_code != 0 || !p.properties.empty())) {
        w.U8(p.reason_code);
        if (!p.properties.empty()) w.Props(p.properties);
      }
      break;
    case PacketType::kSubscribe:
      w.U16(p.packet_id);
      if (v5) w.Props(p.properties);
      for (const auto& s : p.subscriptions) {
        w.Str(s.filter);
        w.U8(s.options);
      }
      break;
    case PacketType::kSuback:
    case PacketType::kUnsuback:
      w.U16(p.packet_id);
      if (v5) w.Props(p.properties);
      if (p.type == PacketType::kSuback || v5) {
        for (uint8_t c : p.reason_codes) w.U8(c);
      }
      break;
    case PacketType::kUnsubscribe:
      w.U16(p.packet_id);
      if (v5) w.Props(p.properties);
      for (const auto& f : p.filters) w.Str(f);
      break;
    case PacketType::kPingreq:
    case PacketType::kPingresp:
      break;
    case PacketType::kDisconnect:
    case PacketType::kAuth:
      if (p.type == PacketType::kAuth && !v5) return false;
      if (v5 && (p.reason_code != 0 || !p.properties.empty())) {
        w.U8(p.reason_code);
        if (!p.properties.empty()) w.Props(p.properties);
      }
      break;
    default:
      return false;
  }
  if (!w.ok || w.out.size() > kMaxRemainingLength) return false;
  Writer head;
  head.U8(static_cast<uint8_t>((static_cast<uint8_t>(p.type) << 4) | FixedFlags(p)));
  head.Varint(static_cast<uint32_t>(w.out.size()));
  out->append(head.out);
  out->append(w.out);
  return true;
}

void AppendAck(PacketType type, uint16_t packet_id, std::string* out) {
  uint8_t flags = type == PacketType::kPubrel ? 0x02 : 0;
  out->push_back(static_cast<char>((static_cast<uint8_t>(type) << 4) | flags));
  out->push_back(2);
  out->push_back(static_cast<char>(packet_id >> 8));
  out->push_back(static_cast<char>(packet_id & 0xFF));
}

std::string ConnackReason(uint8_t level, uint8_t code) {
  if (level != kLevel5) {
    switch (code) {
      case 0:
        return "accepted";
      case 1:
        return "unacceptable protocol version (1)";
      case 2:
        return "client identifier rejected (2)";
      case 3:
        return "server unavailable (3)";
      case 4:
        return "bad user name or password (4)";
      case 5:
        return "not authorized (5)";
      default:
        return fmt::format("unknown return code {}", code);
    }
  }
  return ReasonCodeName(code);
}

std::string ReasonCodeName(uint8_t code) {
  const char* name = nullptr;
  switch (code) {
    case 0x00:
      name = "success";
      break;
    case 0x01:
      name = "granted QoS 1";
      break;
    case 0x02:
      name = "granted QoS 2";
      break;
    case 0x04:
      name = "disconnect with will message";
      break;
    case 0x10:
      name = "no matching subscribers";
      break;
    case 0x11:
      name = "no subscription existed";
      break;
    case 0x80:
      name = "unspecified error";
      break;
    case 0x81:
      name = "malformed packet";
      break;
    case 0x82:
      name = "protocol error";
      break;
    case 0x83:
      name = "implementation specific error";
      break;
    case 0x84:
      name = "unsupported protocol version";
      break;
    case 0x85:
      name = "client identifier not valid";
      break;
    case 0x86:
      name = "bad user name or password";
      break;
    case 0x87:
      name = "not authorized";
      break;
    case 0x88:
      name = "server unavailable";
      break;
    case 0x89:
      name = "server busy";
      break;
    case 0x8A:
      name = "banned";
      break;
    case 0x8B:
      name = "server shutting down";
      break;
    case 0x8C:
      name = "bad authentication method";
      break;
    case 0x8D:
      name = "keep alive timeout";
      break;
    case 0x8E:
      name = "session taken over";
      break;
    case 0x8F:
      name = "topic filter invalid";
      break;
    case 0x90:
      name = "topic name invalid";
      break;
    case 0x91:
      name = "packet identifier in use";
      break;
    case 0x92:
      name = "packet identifier not found";
      break;
    case 0x93:
      name = "receive maximum exceeded";
      break;
    case 0x94:
      name = "topic alias invalid";
      break;
    case 0x95:
      name = "packet too large";
      break;
    case 0x96:
      name = "message rate too high";
      break;
    case 0x97:
      name = "quota exceeded";
      break;
    case 0x98:
      name = "administrative action";
      break;
    case 0x99:
      name = "payload format invalid";
      break;
    case 0x9A:
      name = "retain not supported";
      break;
    case 0x9B:
      name = "QoS not supported";
      break;
    case 0x9C:
      name = "use another server";
      break;
    case 0x9D:
      name = "server moved";
      break;
    case 0x9E:
      name = "shared subscriptions not supported";
      break;
    case 0x9F:
      name = "connection rate exceeded";
      break;
    case 0xA0:
      name = "maximum connect time";
      break;
    case 0xA1:
      name = "subscription identifiers not supported";
      break;
    case 0xA2:
      name = "wildcard subscriptions not supported";
      break;
    default:
      break;
  }
  return name ? fmt::format("{} (0x{:02x})", name, code)
              : fmt::format("reason code 0x{:02x}", code);
}

}  // namespace edgeferry::sensors::mqtt
