// natctl's in-process nftables path (docs/performance.md, "In-process nftables path"): runs an
// nft batch (JSON or nft's text syntax) or a list command through libnftables, off the main
// thread, with nft's output and error text captured in memory instead of printed.
//
// Threads and namespaces: a netlink socket belongs to the network namespace of the thread that
// opens it, and libnftables opens its socket in nft_ctx_new. Every namespace (and the process's
// own, named "") gets a dedicated thread that enters /run/netns/NAME (setns, CLONE_NEWNET) once,
// creates one libnftables context there and runs every call for that namespace; libuv's pool
// threads only hand calls over and wait, so none ever changes namespace. The context is kept
// while calls keep coming: closing an nf_tables socket right after a batch that deleted
// something waits for the kernel's deferred destroy work (an RCU grace period, ~15 ms here), a
// cost a fresh context (or a spawned nft) pays on every such batch. libnftables revalidates its
// cache against the ruleset generation id on every command, so a kept context sees changes
// made by others. After kIdle without calls the thread frees its context and ends, so a deleted
// namespace is not kept alive by natctl; a namespace re-created under the same name (another
// inode) gets a new thread.
//
// withNetns(name, callback) is the other half: it runs a synchronous JS callback with the
// calling (main) thread inside /run/netns/NAME, so that a netlink socket the callback opens
// (the `netlink` package creates and binds its socket in its constructor) belongs to that
// namespace, without spawning a process (docs/operations.md, "Host settings").
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include <nftables/libnftables.h>

#define NATCTL_STR2(x) #x
#define NATCTL_STR(x) NATCTL_STR2(x)
#ifndef NATCTL_LIBNFTABLES_VERSION
#define NATCTL_LIBNFTABLES_VERSION unknown
#endif

namespace {

constexpr std::chrono::seconds kIdle(2);
// A call whose batch or listing is bigger than this leaves libnftables' cache holding the whole
// table (~170 MB at 50,000 mappings): its context is freed right after and the heap trimmed, and
// the next call opens a fresh one. The RCU wait a fresh socket may pay is nothing next to such
// a call (docs/performance.md, "Reading the ruleset back").
constexpr size_t kBigCall = 1 << 20;

// libnftables keeps some process-wide state (its mini-gmp allocator hooks, lazily read
// iproute2 tables), so no two contexts run at once, whichever thread owns them. The shared
// objects below are never destroyed: namespace threads may still run while the process exits.
std::mutex& nftMutex = *new std::mutex();

struct Call {
  std::string input;   // the batch, or the command (e.g. "list table inet natctl")
  std::string netns;   // empty: the process's own namespace
  bool check = false;  // nft -c: evaluate and send to the kernel without committing
  bool terse = false;  // nft -t: listings without named sets' elements
  int rc = 0;
  std::string output;
  std::string error;
  std::string failure;  // set when the call could not run at all (no context, no namespace)
  bool done = false;
  std::mutex doneMutex;
  std::condition_variable doneCv;
};

void complete(Call* call) {
  std::lock_guard<std::mutex> guard(call->doneMutex);
  call->done = true;
  call->doneCv.notify_one();
}

// One namespace's thread. Its queue, cv and retired flag are guarded by registryMutex.
struct NsThread {
  std::string name;
  dev_t dev = 0;
  ino_t ino = 0;
  std::deque<Call*> queue;
  std::condition_variable cv;
  bool retired = false;  // takes no new calls; ends once its queue is empty
};

std::mutex& registryMutex = *new std::mutex();
std::map<std::string, NsThread*>& registry = *new std::map<std::string, NsThread*>();

void unregister(NsThread* self) {  // registryMutex held
  auto found = registry.find(self->name);
  if (found != registry.end() && found->second == self) registry.erase(found);
}

struct nft_ctx* newContext() {
  std::lock_guard<std::mutex> guard(nftMutex);
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return nullptr;
  // JSON output also makes libnftables try the input as JSON first and fall back to nft's
  // text syntax, exactly like `nft -j -f FILE`.
  nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return nullptr;
  }
  return ctx;
}

void runWith(struct nft_ctx* ctx, Call* call) {
  std::lock_guard<std::mutex> guard(nftMutex);
  nft_ctx_set_dry_run(ctx, call->check);
  nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | (call->terse ? NFT_CTX_OUTPUT_TERSE : 0));
  call->rc = nft_run_cmd_from_buffer(ctx, call->input.c_str());
  // Reading a buffer also empties it for the next call.
  const char* out = nft_ctx_get_output_buffer(ctx);
  const char* err = nft_ctx_get_error_buffer(ctx);
  call->output = out != nullptr ? out : "";
  call->error = err != nullptr ? err : "";
}

/** Enters the namespace this thread serves; an empty string on success. */
std::string enterNamespace(const NsThread* self) {
  if (self->name.empty()) return "";
  std::string path = "/run/netns/" + self->name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open " + path + ": " + strerror(errno);
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != self->dev || st.st_ino != self->ino) {
    close(fd);
    return "network namespace " + self->name + " was replaced while natctl was entering it";
  }
  int entered = setns(fd, CLONE_NEWNET);
  int setnsErrno = errno;
  close(fd);
  if (entered != 0) return "cannot enter network namespace " + self->name + ": " + strerror(setnsErrno);
  return "";
}

void* threadMain(void* arg) {
  NsThread* self = static_cast<NsThread*>(arg);
  std::string failure = enterNamespace(self);
  struct nft_ctx* ctx = nullptr;
  if (failure.empty()) {
    ctx = newContext();
    if (ctx == nullptr) failure = "libnftables could not create a context";
  }
  std::unique_lock<std::mutex> lock(registryMutex);
  if (!failure.empty()) {
    // Answer what is queued with the failure; the next call starts afresh.
    self->retired = true;
    unregister(self);
  }
  for (;;) {
    while (self->queue.empty() && !self->retired) {
      if (self->cv.wait_for(lock, kIdle) == std::cv_status::timeout && self->queue.empty()) {
        self->retired = true;
        unregister(self);
      }
    }
    if (self->queue.empty()) break;
    Call* call = self->queue.front();
    self->queue.pop_front();
    lock.unlock();
    if (failure.empty() && ctx == nullptr) {
      ctx = newContext();
      if (ctx == nullptr) call->failure = "libnftables could not create a context";
    }
    if (!failure.empty()) {
      call->failure = failure;
    } else if (ctx != nullptr) {
      runWith(ctx, call);
      // nft 1.0.6 fetches every element into the cache even for a terse listing.
      if (call->terse || call->input.size() + call->output.size() > kBigCall) {
        std::lock_guard<std::mutex> guard(nftMutex);
        nft_ctx_free(ctx);
        ctx = nullptr;
        malloc_trim(0);
      }
    }
    complete(call);
    lock.lock();
  }
  unregister(self);
  lock.unlock();
  if (ctx != nullptr) {
    std::lock_guard<std::mutex> guard(nftMutex);
    nft_ctx_free(ctx);
  }
  delete self;
  return nullptr;
}

/** Hands `call` to its namespace's thread (starting one if needed) and waits for it. */
void submit(Call* call) {
  struct stat st = {};
  if (!call->netns.empty()) {
    std::string path = "/run/netns/" + call->netns;
    if (stat(path.c_str(), &st) != 0) {
      call->failure = "cannot open " + path + ": " + strerror(errno);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> guard(registryMutex);
    NsThread* thread = nullptr;
    auto found = registry.find(call->netns);
    if (found != registry.end()) {
      thread = found->second;
      if (!call->netns.empty() && (thread->dev != st.st_dev || thread->ino != st.st_ino)) {
        // Same name, another namespace: the old thread finishes its queue and ends.
        thread->retired = true;
        thread->cv.notify_one();
        registry.erase(found);
        thread = nullptr;
      }
    }
    if (thread == nullptr) {
      thread = new NsThread();
      thread->name = call->netns;
      thread->dev = st.st_dev;
      thread->ino = st.st_ino;
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      pthread_t id;
      int created = pthread_create(&id, &attr, threadMain, thread);
      pthread_attr_destroy(&attr);
      if (created != 0) {
        delete thread;
        call->failure = std::string("cannot start a thread for libnftables: ") + strerror(created);
        return;
      }
      registry[call->netns] = thread;
    }
    thread->queue.push_back(call);
    thread->cv.notify_one();
  }
  std::unique_lock<std::mutex> wait(call->doneMutex);
  call->doneCv.wait(wait, [call] { return call->done; });
}

class NftWorker : public Napi::AsyncWorker {
 public:
  NftWorker(Napi::Env env, std::string input, std::string netns, bool check, bool terse)
      : Napi::AsyncWorker(env, "natctl:nft"), deferred_(Napi::Promise::Deferred::New(env)) {
    call_.input = std::move(input);
    call_.netns = std::move(netns);
    call_.check = check;
    call_.terse = terse;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    submit(&call_);
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

// run(input: string | Buffer, options?: { check?: boolean, netns?: string, terse?: boolean }):
//   Promise<{ rc: number, output: string, error: string }>
// Rejects only when the call could not run (no context, no namespace); nft's own refusals
// resolve with rc != 0 and the error text.
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string input;
  std::string netns;
  bool check = false;
  bool terse = false;
  if (info.Length() < 1) {
    Napi::TypeError::New(env, "run(input, options): input is required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info[0].IsString()) {
    input = info[0].As<Napi::String>().Utf8Value();
  } else if (info[0].IsBuffer()) {
    Napi::Buffer<char> buffer = info[0].As<Napi::Buffer<char>>();
    input.assign(buffer.Data(), buffer.Length());
  } else {
    Napi::TypeError::New(env, "run(input, options): input must be a string or a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (input.find('\0') != std::string::npos) {
    Napi::TypeError::New(env, "run(input, options): input contains a NUL byte").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object options = info[1].As<Napi::Object>();
    Napi::Value checkOption = options.Get("check");
    if (checkOption.IsBoolean()) check = checkOption.As<Napi::Boolean>().Value();
    Napi::Value terseOption = options.Get("terse");
    if (terseOption.IsBoolean()) terse = terseOption.As<Napi::Boolean>().Value();
    Napi::Value netnsOption = options.Get("netns");
    if (netnsOption.IsString()) {
      netns = netnsOption.As<Napi::String>().Utf8Value();
      if (!validNetnsName(netns)) {
        Napi::TypeError::New(env, "run(input, options): netns is not a network namespace name").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
  }
  NftWorker* worker = new NftWorker(env, std::move(input), std::move(netns), check, terse);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// withNetns(name: string, callback: () => T): T
// Runs `callback` synchronously with the calling thread inside /run/netns/NAME and puts the
// thread back into the namespace it was in, whether the callback returned or threw. Safe
// because of two kernel facts: setns(fd, CLONE_NEWNET) moves only the calling thread (libuv's
// pool threads and the libnftables threads above keep their namespaces; a multithreaded
// process may do this for the network namespace, unlike for the mount or user namespace),
// and a socket keeps the namespace it was created in for its whole life, whichever thread
// later reads or writes it. No other JS runs on this thread while the callback does. If the
// thread cannot be put back, the process aborts: it must never go on in the wrong namespace.
Napi::Value WithNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "withNetns(name, callback): a namespace name and a function are required").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!validNetnsName(name)) {
    Napi::TypeError::New(env, "withNetns(name, callback): name is not a network namespace name").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Function callback = info[1].As<Napi::Function>();
  std::string path = "/run/netns/" + name;
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    Napi::Error::New(env, "cannot open " + path + ": " + strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved < 0) {
    int openErrno = errno;
    close(target);
    Napi::Error::New(env, std::string("cannot open /proc/thread-self/ns/net: ") + strerror(openErrno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int setnsErrno = errno;
    close(target);
    close(saved);
    Napi::Error::New(env, "cannot enter network namespace " + name + ": " + strerror(setnsErrno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  close(target);
  // With C++ exceptions disabled a throwing callback returns an empty value and leaves the JS
  // exception pending; it propagates once this function returns.
  Napi::Value result = callback.Call(env.Undefined(), {});
  if (setns(saved, CLONE_NEWNET) != 0) {
    fprintf(stderr, "natctl: cannot return to the original network namespace after entering %s: %s; aborting\n", name.c_str(), strerror(errno));
    abort();
  }
  close(saved);
  if (env.IsExceptionPending() || result.IsEmpty()) return env.Undefined();
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("withNetns", Napi::Function::New(env, WithNetns, "withNetns"));
  exports.Set("libnftablesVersion", Napi::String::New(env, NATCTL_STR(NATCTL_LIBNFTABLES_VERSION)));
  return exports;
}

}  // namespace

NODE_API_MODULE(natctl_nft, Init)
