// Decodes event packets with event_camera_codecs' own decoders (the upstream headers, compiled
// as they are) and prints every event and trigger event they produce, one per line:
//
//   E <packet> <time> <x> <y> <polarity>
//   T <packet> <time> <edge> <id>
//
// Input (argv[1]): the packet file scripts/event_camera_codecs/make_fixtures.py writes,
// little-endian: "HSNNPKT1", uint32 packet count, then per packet: uint8 stream, uint8 length
// of the encoding name, the name, uint16 width, uint16 height, uint64 time_base, uint32 payload
// length, the payload. The packets of one stream go through one decoder instance, made by the
// upstream DecoderFactory from the packet (encoding and geometry), so decoder state (EVT3 time,
// row, vector base) is carried from packet to packet as a subscriber's would be.
// Time is what the decoder reports: nanoseconds for mono, libcaer and evt3 (their default),
// microseconds for libcaer_cmp, whose time multiplier is set to 1 (with its default of 1000 it
// multiplies time_base, already in nanoseconds, by 1000 again).
#include <event_camera_codecs/decoder_factory.h>
#include <event_camera_codecs/event_processor.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using event_camera_codecs::EventPacket;

namespace
{
class Printer : public event_camera_codecs::EventProcessor
{
public:
  size_t packet{0};
  void eventCD(uint64_t t, uint16_t x, uint16_t y, uint8_t p) override
  {
    std::printf("E %zu %" PRIu64 " %u %u %u\n", packet, t, x, y, p);
  }
  void eventExtTrigger(uint64_t t, uint8_t edge, uint8_t id) override
  {
    std::printf("T %zu %" PRIu64 " %u %u\n", packet, t, edge, id);
  }
  void finished() override {}
  void rawData(const char *, size_t) override {}
};

class Reader
{
public:
  explicit Reader(const std::vector<char> & data) : data_(data) {}
  template <class T>
  T get()
  {
    T value;
    take(&value, sizeof(T));
    return value;  // little-endian host assumed (x86-64, aarch64)
  }
  void take(void * out, size_t n)
  {
    if (pos_ + n > data_.size()) throw std::runtime_error("packet file is truncated");
    std::memcpy(out, data_.data() + pos_, n);
    pos_ += n;
  }

private:
  const std::vector<char> & data_;
  size_t pos_{0};
};
}  // namespace

int main(int argc, char ** argv)
{
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PACKETS\n", argv[0]);
    return 2;
  }
  std::ifstream file(argv[1], std::ios::binary);
  const std::vector<char> data(
    (std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  Reader in(data);
  char magic[8];
  in.take(magic, sizeof(magic));
  if (std::memcmp(magic, "HSNNPKT1", 8) != 0) {
    std::fprintf(stderr, "%s is not a packet file\n", argv[1]);
    return 2;
  }
  const uint32_t count = in.get<uint32_t>();
  event_camera_codecs::DecoderFactory<EventPacket, Printer> factory;
  std::map<int, std::shared_ptr<event_camera_codecs::Decoder<EventPacket, Printer>>> decoders;
  Printer printer;
  for (uint32_t i = 0; i < count; i++) {
    const int stream = in.get<uint8_t>();
    EventPacket msg;
    msg.encoding.resize(in.get<uint8_t>());
    in.take(&msg.encoding[0], msg.encoding.size());
    msg.width = in.get<uint16_t>();
    msg.height = in.get<uint16_t>();
    msg.time_base = in.get<uint64_t>();
    msg.events.resize(in.get<uint32_t>());
    in.take(msg.events.data(), msg.events.size());
    auto & decoder = decoders[stream];
    if (!decoder) {
      decoder = factory.newInstance(msg);
      if (!decoder) {
        std::fprintf(stderr, "no upstream decoder for encoding %s\n", msg.encoding.c_str());
        return 1;
      }
      if (msg.encoding == "libcaer_cmp") decoder->setTimeMultiplier(1);
    }
    printer.packet = i;
    decoder->decode(msg, &printer);
  }
  return 0;
}
