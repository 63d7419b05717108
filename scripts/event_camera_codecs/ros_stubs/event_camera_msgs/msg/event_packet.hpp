// Stand-in for the header rosidl generates from event_camera_msgs/msg/EventPacket.msg, with
// only what event_camera_codecs' decoder headers use: the message's fields (types as the
// .msg declares them) and the ConstSharedPtr alias. The header (std_msgs/Header) is left out:
// no decoder reads it. Written for scripts/event_camera_codecs/harness.cpp; not a ROS message.
#ifndef EVENT_CAMERA_MSGS__MSG__EVENT_PACKET_HPP_
#define EVENT_CAMERA_MSGS__MSG__EVENT_PACKET_HPP_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace event_camera_msgs
{
namespace msg
{
struct EventPacket
{
  using ConstSharedPtr = std::shared_ptr<const EventPacket>;
  std::string encoding;
  uint32_t width{0};
  uint32_t height{0};
  uint64_t seq{0};
  uint64_t time_base{0};
  uint8_t is_bigendian{0};
  std::vector<uint8_t> events;
};
}  // namespace msg
}  // namespace event_camera_msgs

#endif  // EVENT_CAMERA_MSGS__MSG__EVENT_PACKET_HPP_
