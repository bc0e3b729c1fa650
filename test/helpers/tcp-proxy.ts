/**
 * A loopback TCP proxy standing in for the network between a relay and its
 * hub, so tests can cut connections (no close frame, no FIN from the peer)
 * or turn them into black holes (half-open: bytes vanish, nothing closes);
 * given a function, it picks the target per connection, as a load balancer.
 */
import net, { type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Destroys every open connection on both sides. */
  cut(): void;
  /** Open connections stop carrying bytes in either direction, without closing. New ones work. */
  blackhole(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number | (() => number)): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const blackholed = new Set<[Socket, Socket]>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const target = net.connect(typeof targetPort === 'number' ? targetPort : targetPort(), '127.0.0.1');
    const pair: [Socket, Socket] = [client, target];
    pairs.add(pair);
    client.pipe(target).pipe(client);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      target.destroy();
    };
    client.on('error', drop).on('close', drop);
    target.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted;
    },
    cut() {
      for (const [client, target] of pairs) {
        client.resetAndDestroy();
        target.resetAndDestroy();
      }
    },
    blackhole() {
      for (const pair of pairs) {
        const [client, target] = pair;
        client.unpipe(target);
        target.unpipe(client);
        client.pause();
        target.pause();
        pairs.delete(pair);
        blackholed.add(pair);
      }
    },
    close() {
      for (const [client, target] of [...pairs, ...blackholed]) {
        client.destroy();
        target.destroy();
      }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
