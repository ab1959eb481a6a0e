// A small Paho publisher for tests and the benchmark: publishes and waits for the broker's
// acknowledgement (QoS 1/2), so callers know which messages the broker accepted.
#pragma once

#include <mqtt/async_client.h>

#include <chrono>
#include <memory>
#include <string>

namespace edgeferry::sensors::testing {

class Publisher {
 public:
  Publisher(const std::string& uri, const std::string& client_id, int version = 5)
      : client_(uri, client_id,
                mqtt::create_options(version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1, 100000),
                nullptr) {
    mqtt::connect_options o;
    o.set_mqtt_version(version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    if (version == 5) {
      o.set_clean_start(true);
    } else {
      o.set_clean_session(true);
    }
    o.set_max_inflight(1000);
    client_.connect(o)->wait_for(std::chrono::seconds(10));
  }
  ~Publisher() {
    try {
      if (client_.is_connected()) client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (...) {
    }
  }
  bool connected() const { return client_.is_connected(); }

  // Publishes and waits for completion; true if the broker acknowledged (QoS 0: sent).
  bool Publish(const std::string& topic, const std::string& payload, int qos, bool retain = false,
               const mqtt::properties& props = {}) {
    auto msg = mqtt::make_message(topic, payload, qos, retain);
    msg->set_properties(props);
    try {
      return client_.publish(msg)->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception&) {
      return false;
    }
  }
  // Publishes without waiting; the token tells when the broker acknowledged.
  mqtt::delivery_token_ptr PublishAsync(const std::string& topic, const std::string& payload,
                                        int qos) {
    return client_.publish(mqtt::make_message(topic, payload, qos, false));
  }
  mqtt::async_client& client() { return client_; }

 private:
  mqtt::async_client client_;
};

}  // namespace edgeferry::sensors::testing
