/*
 * baton_dpdk.c: wrappers for DPDK's inline fast-path functions and the port
 * set-up (see baton_dpdk.h for why this lives in C).
 */
#include "baton_dpdk.h"

#include <string.h>

int baton_errno(void) { return rte_errno; }

unsigned baton_lcore_id(void) { return rte_lcore_id(); }

unsigned baton_lcore_id_any(void) { return LCORE_ID_ANY; }

int baton_port_info(uint16_t port, struct baton_port_info *out)
{
	struct rte_eth_dev_info info;
	struct rte_ether_addr mac;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!rte_eth_dev_is_valid_port(port))
		return -ENODEV;
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	if (info.driver_name)
		strncpy(out->driver_name, info.driver_name, sizeof(out->driver_name) - 1);
	out->max_rx_queues = info.max_rx_queues;
	out->max_tx_queues = info.max_tx_queues;
	out->rx_desc_max = info.rx_desc_lim.nb_max;
	out->tx_desc_max = info.tx_desc_lim.nb_max;
	out->flow_type_rss_offloads = info.flow_type_rss_offloads;
	out->hash_key_size = info.hash_key_size;
	out->socket_id = rte_eth_dev_socket_id(port);
	rc = rte_eth_macaddr_get(port, &mac);
	if (rc != 0)
		return rc;
	memcpy(out->mac, mac.addr_bytes, 6);
	return 0;
}

int baton_port_setup(uint16_t port, const struct baton_port_conf *conf,
		     struct rte_mempool *pool, const char **stage)
{
	struct rte_eth_conf eth_conf;
	struct rte_eth_dev_info info;
	/* Symmetric Toeplitz: with the key 0x6d5a repeated, (a, b) and (b, a)
	 * hash alike, so both directions of a flow land on one queue. Sized
	 * for the largest key a PMD asks for (52 bytes on i40e). */
	static uint8_t key[64];
	int socket = rte_eth_dev_socket_id(port);
	uint16_t rx_desc = conf->rx_desc, tx_desc = conf->tx_desc;
	uint16_t q;
	int rc;

	*stage = "rte_eth_dev_info_get";
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	if (socket < 0)
		socket = (int)rte_socket_id();

	memset(&eth_conf, 0, sizeof(eth_conf));
	if (conf->enable_rss && conf->nb_rxq > 1) {
		uint8_t len = info.hash_key_size ? info.hash_key_size : 40;
		for (unsigned i = 0; i < sizeof(key); i += 2) {
			key[i] = 0x6d;
			key[i + 1] = 0x5a;
		}
		if (len > sizeof(key))
			len = sizeof(key);
		eth_conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		eth_conf.rx_adv_conf.rss_conf.rss_key = key;
		eth_conf.rx_adv_conf.rss_conf.rss_key_len = len;
		eth_conf.rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
			info.flow_type_rss_offloads;
	}
	if (conf->mtu)
		eth_conf.rxmode.mtu = conf->mtu;

	*stage = "rte_eth_dev_configure";
	rc = rte_eth_dev_configure(port, conf->nb_rxq, conf->nb_txq, &eth_conf);
	if (rc != 0)
		return rc;
	*stage = "rte_eth_dev_adjust_nb_rx_tx_desc";
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
	if (rc != 0)
		return rc;
	for (q = 0; q < conf->nb_rxq; q++) {
		*stage = "rte_eth_rx_queue_setup";
		rc = rte_eth_rx_queue_setup(port, q, rx_desc, (unsigned)socket, NULL, pool);
		if (rc != 0)
			return rc;
	}
	for (q = 0; q < conf->nb_txq; q++) {
		*stage = "rte_eth_tx_queue_setup";
		rc = rte_eth_tx_queue_setup(port, q, tx_desc, (unsigned)socket, NULL);
		if (rc != 0)
			return rc;
	}
	*stage = "rte_eth_dev_start";
	rc = rte_eth_dev_start(port);
	if (rc != 0)
		return rc;
	if (conf->promiscuous) {
		*stage = "rte_eth_promiscuous_enable";
		rc = rte_eth_promiscuous_enable(port);
		if (rc != 0 && rc != -ENOTSUP)
			return rc;
	}
	/* IPv6 neighbour solicitations arrive at multicast groups. */
	*stage = "rte_eth_allmulticast_enable";
	rc = rte_eth_allmulticast_enable(port);
	if (rc != 0 && rc != -ENOTSUP)
		return rc;
	*stage = "";
	return 0;
}

int baton_port_link(uint16_t port, struct baton_link *out)
{
	struct rte_eth_link link;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = rte_eth_link_get_nowait(port, &link);
	if (rc != 0)
		return rc;
	out->speed_mbps = link.link_speed;
	out->up = link.link_status == RTE_ETH_LINK_UP;
	out->full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
	out->autoneg = link.link_autoneg == RTE_ETH_LINK_AUTONEG;
	return 0;
}

void baton_port_shutdown(uint16_t port)
{
	(void)rte_eth_dev_stop(port);
	(void)rte_eth_dev_close(port);
}

uint16_t baton_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t baton_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *baton_mbuf_alloc(struct rte_mempool *pool)
{
	return rte_pktmbuf_alloc(pool);
}

void baton_mbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void baton_mbuf_free_bulk(struct rte_mbuf **m, unsigned n) { rte_pktmbuf_free_bulk(m, n); }

uint8_t *baton_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }

uint16_t baton_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }

uint16_t baton_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

uint16_t baton_mbuf_capacity(const struct rte_mbuf *m)
{
	return (uint16_t)(m->buf_len - m->data_off);
}

int baton_mbuf_set_len(struct rte_mbuf *m, uint16_t len)
{
	if (m->nb_segs != 1 || len > (uint16_t)(m->buf_len - m->data_off))
		return 0;
	m->data_len = len;
	m->pkt_len = len;
	return 1;
}
