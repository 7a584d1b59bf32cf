// A by-hand probe behind docs/performance.md ("In-process nftables path"): the cost of adding
// (and deleting) one verdict-map element straight over nf_tables netlink with libnftnl/libmnl,
// against the same through libnftables (a fresh context per call, as the addon does, and one
// reused context). Not built by npm; needs libnftnl-dev, libmnl-dev, libnftables-dev and root:
//   gcc -O2 -o /tmp/nlprobe native/bench/netlink-vs-libnftables.c -lnftnl -lmnl -lnftables
//   ip netns add probe && /tmp/nlprobe probe 1000; ip netns del probe
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <nftables/libnftables.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int elem_netlink(struct mnl_socket *nl, uint32_t *seq, int msg, uint16_t port) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nftnl_set *s = nftnl_set_alloc();
  nftnl_set_set_str(s, NFTNL_SET_TABLE, "probe");
  nftnl_set_set_str(s, NFTNL_SET_NAME, "ports");
  struct nftnl_set_elem *e = nftnl_set_elem_alloc();
  uint16_t key = htons(port);
  nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &key, sizeof(key));
  nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, NF_ACCEPT);
  nftnl_set_elem_add(s, e);
  struct mnl_nlmsg_batch *batch = mnl_nlmsg_batch_start(buf, sizeof(buf));
  nftnl_batch_begin(mnl_nlmsg_batch_current(batch), (*seq)++);
  mnl_nlmsg_batch_next(batch);
  uint32_t elem_seq = (*seq)++;
  struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(batch), msg, NFPROTO_INET,
                                               NLM_F_CREATE | NLM_F_ACK, elem_seq);
  nftnl_set_elems_nlmsg_build_payload(nlh, s);
  mnl_nlmsg_batch_next(batch);
  nftnl_batch_end(mnl_nlmsg_batch_current(batch), (*seq)++);
  mnl_nlmsg_batch_next(batch);
  int rc = 0;
  if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(batch), mnl_nlmsg_batch_size(batch)) < 0) rc = -1;
  mnl_nlmsg_batch_stop(batch);
  nftnl_set_free(s);
  if (rc) return rc;
  int n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
  if (n < 0) return -1;
  return mnl_cb_run(buf, n, elem_seq, mnl_socket_get_portid(nl), NULL, NULL) < 0 ? -1 : 0;
}

static int run_nft(struct nft_ctx *reuse, const char *cmd) {
  struct nft_ctx *ctx = reuse ? reuse : nft_ctx_new(NFT_CTX_DEFAULT);
  if (!reuse) {
    nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
  }
  int rc = nft_run_cmd_from_buffer(ctx, cmd);
  if (!reuse) nft_ctx_free(ctx);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s NETNS ROUNDS\n", argv[0]);
    return 2;
  }
  char path[256];
  snprintf(path, sizeof(path), "/run/netns/%s", argv[1]);
  int fd = open(path, O_RDONLY);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) { perror(path); return 1; }
  int rounds = atoi(argv[2]);
  if (rounds < 1 || rounds > 100000) return 2;
  if (run_nft(NULL, "add table inet probe\nadd map inet probe ports { type inet_service : verdict; }\n")) return 1;

  struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
  mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID);
  uint32_t seq = (uint32_t)time(NULL);
  double t0 = now_ms();
  for (int i = 0; i < rounds; i++) {
    if (elem_netlink(nl, &seq, NFT_MSG_NEWSETELEM, 10000 + i) || elem_netlink(nl, &seq, NFT_MSG_DELSETELEM, 10000 + i)) { fprintf(stderr, "netlink failed\n"); return 1; }
  }
  double netlink = (now_ms() - t0) / rounds / 2;

  char add[256], del[256];
  double fresh = 0, reused = 0;
  struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  for (int pass = 0; pass < 2; pass++) {
    t0 = now_ms();
    for (int i = 0; i < rounds; i++) {
      snprintf(add, sizeof(add), "{\"nftables\":[{\"add\":{\"element\":{\"family\":\"inet\",\"table\":\"probe\",\"name\":\"ports\",\"elem\":[[%d,{\"accept\":null}]]}}}]}", 10000 + i);
      snprintf(del, sizeof(del), "{\"nftables\":[{\"delete\":{\"element\":{\"family\":\"inet\",\"table\":\"probe\",\"name\":\"ports\",\"elem\":[[%d,{\"accept\":null}]]}}}]}", 10000 + i);
      if (run_nft(pass ? ctx : NULL, add) || run_nft(pass ? ctx : NULL, del)) { fprintf(stderr, "libnftables failed: %s\n", nft_ctx_get_error_buffer(ctx)); return 1; }
    }
    *(pass ? &reused : &fresh) = (now_ms() - t0) / rounds / 2;
  }
  nft_ctx_free(ctx);
  run_nft(NULL, "delete table inet probe\n");
  printf("one map element add or delete, mean of %d adds + %d deletes, in C:\n", rounds, rounds);
  printf("  libnftnl/libmnl netlink batch:         %.3f ms\n", netlink);
  printf("  libnftables, fresh context per call:   %.3f ms\n", fresh);
  printf("  libnftables, one reused context:       %.3f ms\n", reused);
  return 0;
}
