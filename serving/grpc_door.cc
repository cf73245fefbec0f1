// The front door's compiled gRPC lane: a grpc++ proxy on the public gRPC port.
//
// A ModelInferRequest that it can vouch for goes straight to Triton's private gRPC port; every other
// call (other methods, a request it cannot vouch for, any model while the Python door says it is not
// ready) goes to the Python gRPC door (front_door_grpc.py) on a private port, which holds every rule and
// says every refusal. So this file only has to be right about what it passes, never about why a request
// is refused: it passes a request only when the message has the canonical shape tritonclient writes and
// every declared name, datatype, shape and raw-tensor size matches the model's signature. When in doubt,
// it asks the Python door.
//
// Python writes the rules in a text file (--rules, written by front_door_grpc_compiled.py) and shares a
// small state file (--state, mapped by both): the "Triton is down" flag and each model's "not ready" flag
// (Python writes), each model's requests in flight, time of the last one and answers saying its stub died
// (this program writes).
//
//   ganexport-grpc-door --listen 0.0.0.0:8001 --triton 127.0.0.1:41001 --fallback 127.0.0.1:41002
//                       --rules rules.tsv --state state.bin        (one command line)

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

const char kModelInfer[] = "/inference.GRPCInferenceService/ModelInfer";

// ---------------------------------------------------------------- the rules, as Python wrote them

struct Input {
  std::string name, datatype;
  int64_t itemsize = 0;
  std::vector<int64_t> dims;  // without the batch dim; -1: an image side
};

struct Model {
  int slot = 0;  // its record in the state file
  int64_t max_batch = 0, min_side = -1, max_side = -1;
  std::vector<Input> inputs;
};

struct Rules {
  int64_t message_limit = 0;
  std::map<std::string, std::string> streaming;  // method path -> the refusal
  std::vector<std::string> unreachable_words;     // grpc's words when Triton cannot be reached
  std::string unreachable_message, stub_died;
  std::map<std::string, Model> models;
};

std::vector<std::string> Fields(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  std::string field;
  while (std::getline(in, field, '\t')) out.push_back(field);
  return out;
}

Rules ReadRules(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the rules file");
  Rules rules;
  Model* model = nullptr;
  std::string line;
  while (std::getline(in, line)) {
    auto f = Fields(line);
    if (f.empty()) continue;
    if (f[0] == "message_limit" && f.size() == 2) {
      rules.message_limit = std::stoll(f[1]);
    } else if (f[0] == "stream" && f.size() == 3) {
      rules.streaming[f[1]] = f[2];
    } else if (f[0] == "unreachable_word" && f.size() == 2) {
      rules.unreachable_words.push_back(f[1]);
    } else if (f[0] == "unreachable_message" && f.size() == 2) {
      rules.unreachable_message = f[1];
    } else if (f[0] == "stub_died" && f.size() == 2) {
      rules.stub_died = f[1];
    } else if (f[0] == "model" && f.size() == 6) {
      model = &rules.models[f[1]];
      model->slot = std::stoi(f[2]);
      model->max_batch = std::stoll(f[3]);
      model->min_side = std::stoll(f[4]);
      model->max_side = std::stoll(f[5]);
    } else if (f[0] == "input" && f.size() >= 4 && model != nullptr) {
      Input input{f[1], f[2], std::stoll(f[3]), {}};
      for (size_t i = 4; i < f.size(); ++i) input.dims.push_back(std::stoll(f[i]));
      model->inputs.push_back(input);
    } else {
      throw std::runtime_error("unexpected rules line: " + line);
    }
  }
  return rules;
}

// ---------------------------------------------------------------- the state shared with Python

// Layout (native byte order, which both sides share): int32 down at 0, then one 32-byte record per model.
struct ModelState {
  int32_t blocked;    // Python: not ready (its stub died and is being restarted)
  int32_t in_flight;  // here: requests passed to Triton and not yet answered
  int64_t last_ns;    // here: CLOCK_MONOTONIC of the latest request in or answer out
  int64_t died;       // here: Triton's answers saying the model's stub died
  int64_t passed;     // here: requests passed straight to Triton
};
constexpr size_t kHeader = 8;

class SharedState {
 public:
  SharedState(const std::string& path, size_t models) {
    size_t size = kHeader + models * sizeof(ModelState);
    int fd = open(path.c_str(), O_RDWR);
    if (fd < 0) throw std::runtime_error("cannot open the state file");
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map the state file");
    base_ = static_cast<char*>(p);
  }
  bool down() const { return __atomic_load_n(reinterpret_cast<int32_t*>(base_), __ATOMIC_ACQUIRE) != 0; }
  ModelState* model(int slot) const { return reinterpret_cast<ModelState*>(base_ + kHeader) + slot; }

 private:
  char* base_ = nullptr;
};

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// ---------------------------------------------------------------- reading protobuf's wire format

// A cursor over the message's slices, so a 25 MB request is walked where it lies, never copied.
class Cursor {
 public:
  explicit Cursor(std::vector<std::pair<const uint8_t*, size_t>> spans) : spans_(std::move(spans)) {
    for (auto& s : spans_) left_ += s.second;
  }
  size_t left() const { return left_; }
  bool Byte(uint8_t* b) {
    while (i_ < spans_.size() && off_ == spans_[i_].second) ++i_, off_ = 0;
    if (i_ == spans_.size()) return false;
    *b = spans_[i_].first[off_++];
    --left_;
    return true;
  }
  bool Skip(uint64_t n) { return Advance(n, nullptr); }
  bool Take(uint64_t n, std::string* out) {  // for the small fields only: names, shapes, a tensor's header
    out->clear();
    out->reserve(n <= left_ ? n : 0);
    return Advance(n, out);
  }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!Byte(&b)) return false;
      *v |= uint64_t(b & 0x7F) << shift;
      if (b < 0x80) return true;
    }
    return false;
  }
  // One field's tag; false at the end of the message or on a malformed tag.
  bool Tag(uint32_t* field, uint32_t* wire) {
    uint64_t tag;
    if (!Varint(&tag)) return false;
    *field = uint32_t(tag >> 3), *wire = uint32_t(tag & 7);
    return *field != 0;
  }

 private:
  bool Advance(uint64_t n, std::string* out) {  // past n bytes, appended to out unless it is nullptr
    if (n > left_) return false;
    left_ -= n;
    while (n > 0) {
      while (off_ == spans_[i_].second) ++i_, off_ = 0;
      size_t here = std::min<uint64_t>(n, spans_[i_].second - off_);
      if (out != nullptr) out->append(reinterpret_cast<const char*>(spans_[i_].first + off_), here);
      off_ += here, n -= here;
    }
    return true;
  }

  std::vector<std::pair<const uint8_t*, size_t>> spans_;
  size_t i_ = 0, off_ = 0, left_ = 0;
};

Cursor OverString(const std::string& s) {
  return Cursor({{reinterpret_cast<const uint8_t*>(s.data()), s.size()}});
}

bool Ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

struct DeclaredInput {
  std::string name, datatype;
  std::vector<int64_t> shape;
};

// One InferInputTensor, only in the form tritonclient writes for raw tensors: name, datatype and shape,
// no parameters (shared memory), no typed contents, nothing else.
bool ReadInput(const std::string& bytes, DeclaredInput* input) {
  Cursor c = OverString(bytes);
  uint32_t field, wire;
  bool name = false, datatype = false;
  while (c.left() > 0) {
    if (!c.Tag(&field, &wire)) return false;
    uint64_t n;
    if (wire != 2 || !c.Varint(&n)) return false;
    if (field == 1 && !name) {
      if (!c.Take(n, &input->name)) return false;
      name = true;
    } else if (field == 2 && !datatype) {
      if (!c.Take(n, &input->datatype)) return false;
      datatype = true;
    } else if (field == 3 && input->shape.empty()) {  // packed int64, as proto3 writes it
      std::string packed;
      if (!c.Take(n, &packed)) return false;
      Cursor dims = OverString(packed);
      while (dims.left() > 0) {
        uint64_t d;
        if (!dims.Varint(&d) || int64_t(d) < 0) return false;
        input->shape.push_back(int64_t(d));
      }
    } else {
      return false;
    }
  }
  return name && datatype && Ascii(input->name) && Ascii(input->datatype);
}

struct Declared {
  std::string model;
  std::vector<DeclaredInput> inputs;
  std::vector<uint64_t> raw_sizes;
};

// The request's model and inputs, or false when it is not in the canonical form: then the Python door
// reads it with protobuf and decides.
bool ReadRequest(Cursor c, Declared* req) {
  uint32_t field, wire;
  bool model = false, version = false, id = false;
  while (c.left() > 0) {
    if (!c.Tag(&field, &wire)) return false;
    uint64_t n;
    if (wire != 2 || !c.Varint(&n)) return false;
    std::string bytes;
    switch (field) {
      case 1:  // model_name
        if (model || !c.Take(n, &req->model)) return false;
        model = true;
        break;
      case 2:  // model_version
      case 3:  // id
        if ((field == 2 ? version : id) || !c.Take(n, &bytes) || !Ascii(bytes)) return false;
        (field == 2 ? version : id) = true;
        break;
      case 4:  // parameters: request-level (priority, timeout ...), Triton's to read
      case 6:  // outputs requested
        if (n > 64 * 1024 || !c.Take(n, &bytes) || !Ascii(bytes)) return false;
        break;
      case 5:  // inputs
        if (n > 64 * 1024 || !c.Take(n, &bytes)) return false;
        req->inputs.emplace_back();
        if (!ReadInput(bytes, &req->inputs.back())) return false;
        break;
      case 7:  // raw_input_contents: measured, never read
        req->raw_sizes.push_back(n);
        if (!c.Skip(n)) return false;
        break;
      default:
        return false;
    }
  }
  return model;
}

// Whether the Python door's checks (validation.validate_declared) would pass the request as it is.
bool Matches(const Model& m, const Declared& req) {
  if (req.inputs.size() != m.inputs.size() || req.raw_sizes.size() != req.inputs.size()) return false;
  int64_t batch = -1;
  for (const Input& want : m.inputs) {
    size_t found = req.inputs.size(), seen = 0;
    for (size_t k = 0; k < req.inputs.size(); ++k)
      if (req.inputs[k].name == want.name) found = k, ++seen;
    if (seen != 1) return false;
    const DeclaredInput& got = req.inputs[found];
    if (got.datatype != want.datatype || got.shape.size() != want.dims.size() + 1) return false;
    int64_t n = got.shape[0];
    if (n < 1 || n > m.max_batch || (batch != -1 && n != batch)) return false;
    batch = n;
    uint64_t bytes = uint64_t(n) * uint64_t(want.itemsize);  // every factor is bounded below: no overflow
    for (size_t d = 0; d < want.dims.size(); ++d) {
      int64_t side = got.shape[d + 1];
      if (want.dims[d] != -1 && side != want.dims[d]) return false;
      if (want.dims[d] == -1 && ((m.min_side != -1 && side < m.min_side) || m.max_side == -1 || side > m.max_side))
        return false;
      bytes *= uint64_t(side);
    }
    if (bytes != req.raw_sizes[found]) return false;
  }
  return true;
}

// ---------------------------------------------------------------- the proxy

std::vector<std::pair<const uint8_t*, size_t>> Spans(std::vector<grpc::Slice>* slices) {
  std::vector<std::pair<const uint8_t*, size_t>> out;
  for (auto& s : *slices) out.emplace_back(s.begin(), s.size());
  return out;
}

class Door : public grpc::CallbackGenericService {
 public:
  Door(Rules rules, SharedState* state, std::shared_ptr<grpc::Channel> triton,
       std::shared_ptr<grpc::Channel> fallback)
      : rules_(std::move(rules)), state_(state), triton_(triton), fallback_(fallback) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Call(this, ctx);
  }

 private:
  // One call: a unary method read whole, then passed on; a streaming one refused as the Python door does.
  class Call : public grpc::ServerGenericBidiReactor {
   public:
    Call(Door* door, grpc::GenericCallbackServerContext* ctx) : door_(door), ctx_(ctx) {
      auto stream = door_->rules_.streaming.find(ctx_->method());
      if (stream != door_->rules_.streaming.end()) {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, stream->second));
        return;
      }
      StartRead(&request_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
        return;
      }
      for (const auto& kv : ctx_->client_metadata()) {
        std::string key(kv.first.data(), kv.first.size());
        if (key.empty() || key[0] == ':' || key.rfind("grpc-", 0) == 0 || key == "authorization") continue;
        upstream_.AddMetadata(key, std::string(kv.second.data(), kv.second.size()));
      }
      upstream_.set_deadline(ctx_->deadline());
      model_ = door_->Vouch(ctx_->method(), &request_);
      if (model_ == nullptr) {  // the Python door decides, and its answer goes back as it is
        door_->fallback_.UnaryCall(&upstream_, ctx_->method(), grpc::StubOptions(), &request_, &response_,
                                   [this](grpc::Status s) { Answer(s, true); });
        return;
      }
      ModelState* st = door_->state_->model(model_->slot);
      __atomic_add_fetch(&st->in_flight, 1, __ATOMIC_ACQ_REL);
      __atomic_store_n(&st->last_ns, MonotonicNs(), __ATOMIC_RELEASE);
      __atomic_add_fetch(&st->passed, 1, __ATOMIC_ACQ_REL);
      door_->triton_.UnaryCall(&upstream_, ctx_->method(), grpc::StubOptions(), &request_, &response_,
                               [this, st](grpc::Status s) {
                                 __atomic_store_n(&st->last_ns, MonotonicNs(), __ATOMIC_RELEASE);
                                 __atomic_sub_fetch(&st->in_flight, 1, __ATOMIC_ACQ_REL);
                                 Answer(door_->FromTriton(s, st), false);
                               });
    }

    void OnCancel() override { upstream_.TryCancel(); }  // the client gave up: so does the call it made
    void OnDone() override { delete this; }

   private:
    void Answer(const grpc::Status& s, bool trailing) {
      if (trailing)  // the Python door's trailing metadata (retry-after) travels with its refusal
        for (const auto& kv : upstream_.GetServerTrailingMetadata())
          ctx_->AddTrailingMetadata(std::string(kv.first.data(), kv.first.size()),
                                    std::string(kv.second.data(), kv.second.size()));
      if (s.ok())
        StartWriteAndFinish(&response_, grpc::WriteOptions(), s);
      else
        Finish(s);
    }

    Door* door_;
    grpc::GenericCallbackServerContext* ctx_;
    grpc::ClientContext upstream_;
    grpc::ByteBuffer request_, response_;
    const Model* model_ = nullptr;
  };

  // The model a request goes straight to Triton for, or nullptr: the Python door's to answer.
  const Model* Vouch(const std::string& method, grpc::ByteBuffer* request) const {
    if (method != kModelInfer || state_->down()) return nullptr;
    std::vector<grpc::Slice> slices;
    if (!request->Dump(&slices).ok()) return nullptr;
    Declared req;
    if (!ReadRequest(Cursor(Spans(&slices)), &req)) return nullptr;
    auto found = rules_.models.find(req.model);
    if (found == rules_.models.end()) return nullptr;
    const Model& m = found->second;
    if (__atomic_load_n(&state_->model(m.slot)->blocked, __ATOMIC_ACQUIRE) != 0) return nullptr;
    return Matches(m, req) ? &m : nullptr;
  }

  // Triton's answer as the Python door would pass it: a dead stub counted, an unreachable Triton said
  // without its private address.
  grpc::Status FromTriton(const grpc::Status& s, ModelState* st) const {
    if (s.ok()) return s;
    const std::string& details = s.error_message();
    if (!rules_.stub_died.empty() && details.find(rules_.stub_died) != std::string::npos)
      __atomic_add_fetch(&st->died, 1, __ATOMIC_ACQ_REL);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE)
      for (const auto& word : rules_.unreachable_words)
        if (details.find(word) != std::string::npos) return grpc::Status(s.error_code(), rules_.unreachable_message);
    return s;
  }

  Rules rules_;
  SharedState* state_;
  grpc::GenericStub triton_, fallback_;
};

std::shared_ptr<grpc::Channel> Upstream(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

int main(int argc, char** argv) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);  // the thread of serve that started this one is gone: so is this one
  std::map<std::string, std::string> opt;
  for (int i = 1; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
  for (const char* want : {"--listen", "--triton", "--fallback", "--rules", "--state"}) {
    if (!opt.count(want)) {
      std::cerr << "usage: ganexport-grpc-door --listen HOST:PORT --triton HOST:PORT --fallback HOST:PORT "
                   "--rules FILE --state FILE"
                << std::endl;
      return 2;
    }
  }
  try {
    Rules rules = ReadRules(opt["--rules"]);
    int64_t limit = rules.message_limit;
    SharedState state(opt["--state"], rules.models.size());
    Door door(std::move(rules), &state, Upstream(opt["--triton"]), Upstream(opt["--fallback"]));
    grpc::ServerBuilder builder;
    int bound = 0;
    builder.AddListeningPort(opt["--listen"], grpc::InsecureServerCredentials(), &bound);
    builder.SetMaxReceiveMessageSize(int(limit));  // larger messages are refused from their length prefix
    builder.SetMaxSendMessageSize(-1);
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.RegisterCallbackGenericService(&door);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || bound == 0) {
      std::cerr << "cannot listen on " << opt["--listen"] << std::endl;
      return 1;
    }
    std::cout << "listening on " << opt["--listen"] << std::endl;
    server->Wait();
  } catch (const std::exception& e) {
    std::cerr << e.what() << std::endl;
    return 1;
  }
}
