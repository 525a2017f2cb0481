/*
 * baton_dpdk.h: the C side of Baton's DPDK backend.
 *
 * DPDK's fast-path calls (rte_eth_rx_burst, rte_eth_tx_burst, mbuf
 * alloc/free, rte_pktmbuf_mtod, rte_errno, rte_lcore_id) are static inline
 * functions or macros, so bindgen cannot link to them. This shim wraps each in
 * a real function, and does the port set-up whose structs (rte_eth_conf,
 * rte_eth_link) are full of unions and bitfields that are clearer in C.
 * Built by dataplane/build.rs with the flags of `pkg-config --cflags libdpdk`.
 */
#ifndef BATON_DPDK_H
#define BATON_DPDK_H

#include <stdint.h>
#include <stddef.h>

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* What the backend needs to know about a port before configuring it. */
struct baton_port_info {
	char driver_name[64];
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	uint16_t rx_desc_max;
	uint16_t tx_desc_max;
	uint64_t flow_type_rss_offloads;
	uint8_t hash_key_size;
	int socket_id;
	uint8_t mac[6];
};

/* How to configure a port: queue counts, ring sizes, RSS. */
struct baton_port_conf {
	uint16_t nb_rxq;
	uint16_t nb_txq;
	uint16_t rx_desc;
	uint16_t tx_desc;
	/* Spread flows over the RX queues with a symmetric Toeplitz key. */
	int enable_rss;
	int promiscuous;
	uint16_t mtu;
};

/* Link state as plain fields (rte_eth_link is a bitfield). */
struct baton_link {
	uint32_t speed_mbps;
	int up;
	int full_duplex;
	int autoneg;
};

int baton_errno(void);
unsigned baton_lcore_id(void);
unsigned baton_lcore_id_any(void);

int baton_port_info(uint16_t port, struct baton_port_info *out);
/* Configures queues (every RX queue takes mbufs from `pool`) and starts the
 * port. Returns 0 or a negative errno; `stage` names the call that failed. */
int baton_port_setup(uint16_t port, const struct baton_port_conf *conf,
		     struct rte_mempool *pool, const char **stage);
int baton_port_link(uint16_t port, struct baton_link *out);
void baton_port_shutdown(uint16_t port);

uint16_t baton_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t baton_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

struct rte_mbuf *baton_mbuf_alloc(struct rte_mempool *pool);
void baton_mbuf_free(struct rte_mbuf *m);
void baton_mbuf_free_bulk(struct rte_mbuf **m, unsigned n);
uint8_t *baton_mbuf_data(struct rte_mbuf *m);
uint16_t baton_mbuf_data_len(const struct rte_mbuf *m);
uint16_t baton_mbuf_nb_segs(const struct rte_mbuf *m);
/* Room from the data start to the end of the buffer (one segment). */
uint16_t baton_mbuf_capacity(const struct rte_mbuf *m);
/* Sets data_len and pkt_len of a one-segment mbuf; 0 if it does not fit. */
int baton_mbuf_set_len(struct rte_mbuf *m, uint16_t len);

#endif
