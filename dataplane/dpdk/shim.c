/* SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * The C side of synergy's DPDK transport: the few DPDK calls it needs, behind a small stable
 * C ABI of plain integers and byte buffers. DPDK's fast-path functions (rte_eth_rx_burst,
 * rte_pktmbuf_*) are static inline in its headers, so Rust cannot call them directly; this file
 * compiles them against Debian's libdpdk-dev (pkg-config libdpdk) instead of binding all of DPDK.
 * Frames are copied in and out; parsing and building Ethernet/IPv4/UDP is Rust's job.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define SYN_MAX_PORTS 8
#define SYN_BURST 32

static struct rte_mempool *pools[SYN_MAX_PORTS];

int syn_dpdk_init(int argc, char **argv)
{
	int r = rte_eal_init(argc, argv);
	return r < 0 ? -rte_errno : 0;
}

int syn_dpdk_cleanup(void)
{
	return rte_eal_cleanup();
}

int syn_dpdk_port_by_name(const char *name, uint16_t *port)
{
	return rte_eth_dev_get_port_by_name(name, port);
}

/* Configures `port` with `queues` RX/TX queue pairs and starts it. */
int syn_dpdk_port_setup(uint16_t port, uint16_t queues, unsigned int nb_mbufs)
{
	struct rte_eth_conf conf;
	char name[32];
	int r;

	if (port >= SYN_MAX_PORTS || queues == 0)
		return -EINVAL;
	memset(&conf, 0, sizeof(conf));
	snprintf(name, sizeof(name), "synergy_pool_%u", port);
	pools[port] = rte_pktmbuf_pool_create(name, nb_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pools[port])
		return -rte_errno;
	r = rte_eth_dev_configure(port, queues, queues, &conf);
	if (r < 0)
		return r;
	for (uint16_t q = 0; q < queues; q++) {
		r = rte_eth_rx_queue_setup(port, q, 1024, rte_eth_dev_socket_id(port), NULL, pools[port]);
		if (r < 0)
			return r;
		r = rte_eth_tx_queue_setup(port, q, 1024, rte_eth_dev_socket_id(port), NULL);
		if (r < 0)
			return r;
	}
	r = rte_eth_dev_start(port);
	if (r < 0)
		return r;
	rte_eth_promiscuous_enable(port);
	return 0;
}

int syn_dpdk_port_stop(uint16_t port)
{
	int r = rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
	return r;
}

int syn_dpdk_mac(uint16_t port, uint8_t mac[6])
{
	struct rte_ether_addr a;
	int r = rte_eth_macaddr_get(port, &a);
	if (r == 0)
		memcpy(mac, a.addr_bytes, 6);
	return r;
}

/* Receives up to `max` frames on (port, queue), copying each into `frames + i * cap` with its
 * length in `lens[i]` (frames longer than `cap` or in several segments get length 0: the caller
 * counts them as malformed). Returns the number of frames. */
uint16_t syn_dpdk_rx(uint16_t port, uint16_t queue, uint8_t *frames, uint16_t *lens, uint16_t max, uint16_t cap)
{
	struct rte_mbuf *m[SYN_BURST];
	uint16_t n = rte_eth_rx_burst(port, queue, m, max < SYN_BURST ? max : SYN_BURST);

	for (uint16_t i = 0; i < n; i++) {
		uint16_t len = rte_pktmbuf_data_len(m[i]);
		if (m[i]->nb_segs != 1 || len > cap) {
			lens[i] = 0;
		} else {
			memcpy(frames + (size_t)i * cap, rte_pktmbuf_mtod(m[i], const uint8_t *), len);
			lens[i] = len;
		}
		rte_pktmbuf_free(m[i]);
	}
	return n;
}

/* Sends one frame on (port, queue). 0 on success, -ENOBUFS if no mbuf or the queue is full. */
int syn_dpdk_tx(uint16_t port, uint16_t queue, const uint8_t *frame, uint16_t len)
{
	struct rte_mbuf *m;
	char *data;

	if (port >= SYN_MAX_PORTS || !pools[port])
		return -EINVAL;
	m = rte_pktmbuf_alloc(pools[port]);
	if (!m)
		return -ENOBUFS;
	data = rte_pktmbuf_append(m, len);
	if (!data) {
		rte_pktmbuf_free(m);
		return -EMSGSIZE;
	}
	memcpy(data, frame, len);
	if (rte_eth_tx_burst(port, queue, &m, 1) != 1) {
		rte_pktmbuf_free(m);
		return -ENOBUFS;
	}
	return 0;
}
