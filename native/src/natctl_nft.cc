// natctl's in-process nftables path (docs/performance.md, "In-process nftables path"): runs an
// nft batch (JSON or nft's text syntax) or a list command through libnftables, on a worker
// thread, with nft's output and error text captured in memory instead of printed.
//
// Namespaces: a netlink socket belongs to the network namespace of the thread that opens it,
// and libnftables opens its socket in nft_ctx_new. A call for a named namespace therefore runs
// on a thread of its own that enters /run/netns/NAME (setns, CLONE_NEWNET) first and exits when
// the call is done, so no libuv pool thread is ever left in another namespace.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include <nftables/libnftables.h>

#define NATCTL_STR2(x) #x
#define NATCTL_STR(x) NATCTL_STR2(x)
#ifndef NATCTL_LIBNFTABLES_VERSION
#define NATCTL_LIBNFTABLES_VERSION unknown
#endif

namespace {

// libnftables keeps some process-wide state (its mini-gmp allocator hooks, lazily read
// iproute2 tables), so contexts are not used concurrently: one call at a time per process.
// natctl's own calls are sequential anyway (one apply holds the lock).
std::mutex nftMutex;

struct Call {
  std::string input;   // the batch, or the command (e.g. "list table inet natctl")
  std::string netns;   // empty: the caller's namespace
  bool check = false;  // nft -c: evaluate and send to the kernel without committing
  int rc = 0;
  std::string output;
  std::string error;
  std::string failure;  // set when the call could not run at all (no context, no namespace)
};

void runHere(Call* call) {
  std::lock_guard<std::mutex> guard(nftMutex);
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    call->failure = "libnftables could not create a context";
    return;
  }
  // JSON output also makes libnftables try the input as JSON first and fall back to nft's
  // text syntax, exactly like `nft -j -f FILE`.
  nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
  nft_ctx_set_dry_run(ctx, call->check);
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    call->failure = "libnftables could not buffer its output";
    return;
  }
  call->rc = nft_run_cmd_from_buffer(ctx, call->input.c_str());
  const char* out = nft_ctx_get_output_buffer(ctx);
  const char* err = nft_ctx_get_error_buffer(ctx);
  call->output = out != nullptr ? out : "";
  call->error = err != nullptr ? err : "";
  nft_ctx_free(ctx);
}

void* runInNetns(void* arg) {
  Call* call = static_cast<Call*>(arg);
  std::string path = "/run/netns/" + call->netns;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    call->failure = "cannot open " + path + ": " + strerror(errno);
    return nullptr;
  }
  // Only this thread moves; it ends right after the call.
  int entered = setns(fd, CLONE_NEWNET);
  int setnsErrno = errno;
  close(fd);
  if (entered != 0) {
    call->failure = "cannot enter network namespace " + call->netns + ": " + strerror(setnsErrno);
    return nullptr;
  }
  runHere(call);
  return nullptr;
}

class NftWorker : public Napi::AsyncWorker {
 public:
  NftWorker(Napi::Env env, Call call)
      : Napi::AsyncWorker(env, "natctl:nft"), call_(std::move(call)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (call_.netns.empty()) {
      runHere(&call_);
    } else {
      pthread_t thread;
      int created = pthread_create(&thread, nullptr, runInNetns, &call_);
      if (created != 0) {
        call_.failure = std::string("cannot start a thread for the namespace: ") + strerror(created);
      } else {
        pthread_join(thread, nullptr);
      }
    }
    if (!call_.failure.empty()) SetError(call_.failure);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    result.Set("rc", Napi::Number::New(env, call_.rc));
    result.Set("output", Napi::String::New(env, call_.output));
    result.Set("error", Napi::String::New(env, call_.error));
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Call call_;
  Napi::Promise::Deferred deferred_;
};

bool validNetnsName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// run(input: string | Buffer, options?: { check?: boolean, netns?: string }):
//   Promise<{ rc: number, output: string, error: string }>
// Rejects only when the call could not run (no context, no namespace); nft's own refusals
// resolve with rc != 0 and the error text.
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Call call;
  if (info.Length() < 1) {
    Napi::TypeError::New(env, "run(input, options): input is required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info[0].IsString()) {
    call.input = info[0].As<Napi::String>().Utf8Value();
  } else if (info[0].IsBuffer()) {
    Napi::Buffer<char> buffer = info[0].As<Napi::Buffer<char>>();
    call.input.assign(buffer.Data(), buffer.Length());
  } else {
    Napi::TypeError::New(env, "run(input, options): input must be a string or a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (call.input.find('\0') != std::string::npos) {
    Napi::TypeError::New(env, "run(input, options): input contains a NUL byte").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object options = info[1].As<Napi::Object>();
    Napi::Value check = options.Get("check");
    if (check.IsBoolean()) call.check = check.As<Napi::Boolean>().Value();
    Napi::Value netns = options.Get("netns");
    if (netns.IsString()) {
      call.netns = netns.As<Napi::String>().Utf8Value();
      if (!validNetnsName(call.netns)) {
        Napi::TypeError::New(env, "run(input, options): netns is not a network namespace name").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
  }
  NftWorker* worker = new NftWorker(env, std::move(call));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("libnftablesVersion", Napi::String::New(env, NATCTL_STR(NATCTL_LIBNFTABLES_VERSION)));
  return exports;
}

}  // namespace

NODE_API_MODULE(natctl_nft, Init)
