/**
 * Issue 16 item 4: a direct-mode relay with a connector key holds a control
 * channel to the hub, marked so in the handshake. The hub pushes revocations
 * down it but never routes an agent's request to it. The control channel
 * here is a hand-written relay (fake-relay.ts) that would take any stream
 * the hub opened, so a stream sent its way would show.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { startRelay, type RunningRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { CHANNEL_HEADER } from '../../src/tunnel/handshake.js';
import { FrameType } from '../../src/tunnel/mux.js';
import { dialHub, type FakeRelay, frame, hubGauge } from '../helpers/fake-relay.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
let edgeKey: string;
let edgeToken: string;
let vacantToken: string;
const controlChannels: FakeRelay[] = [];
let tunnelRelay: RunningRelay | undefined;

beforeAll(async () => {
  stack = await startStack({ mode: 'tunnel', issuer: { adminListen: { host: '127.0.0.1', port: 0 } } });
  const { registry, close } = await stack.registry();
  edgeKey = await registry.createCluster('edge', 'acme');
  await registry.createCluster('vacant', 'acme');
  await close();
  edgeToken = await stack.token(undefined, 'edge');
  vacantToken = await stack.token(undefined, 'vacant');
});

afterAll(async () => {
  for (const channel of controlChannels) channel.ws.terminate();
  await tunnelRelay?.close();
  await stack?.close();
});

const throughHub = (cluster: string, token: string) => request(`${stack.issuer.url}/clusters/${cluster}/version`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
const opened = (channel: FakeRelay) => channel.frames.filter((f) => f.type === FrameType.Open).length;

async function controlChannel(): Promise<FakeRelay> {
  const before = await hubGauge(stack, 'kube_relay_control_channels_connected', 'edge');
  const channel = await dialHub(stack, edgeKey, 'edge', { [CHANNEL_HEADER]: 'control' });
  controlChannels.push(channel);
  // It says it is ready, as a healthy direct relay does: readiness must not make it a route either.
  channel.ws.send(frame(FrameType.Control, 0, JSON.stringify({ type: 'ready', ready: true })));
  await until(async () => (await hubGauge(stack, 'kube_relay_control_channels_connected', 'edge')) === before + 1, 10_000, 'the hub to count the control channel');
  return channel;
}

describe('a control channel', () => {
  it('is never routed to: a cluster with only a control channel answers agents 503, as one with no relay at all', async () => {
    const channel = await controlChannel();
    const onlyControl = await throughHub('edge', edgeToken);
    const none = await throughHub('vacant', vacantToken);
    expect(onlyControl.status).toBe(503);
    expect(none.status).toBe(503);
    expect(onlyControl.json().message).toBe('cluster "edge" has no relay connected to this hub right now');
    expect(onlyControl.json().message).toBe((none.json().message as string).replace('vacant', 'edge'));
    expect(await hubGauge(stack, 'kube_relay_tunnel_connected', 'edge')).toBe(0);
    expect(opened(channel)).toBe(0);
  });

  it('with a tunnel beside it, every request goes down the tunnel and none down the control channel', async () => {
    const channel = await controlChannel();
    tunnelRelay = await startRelay({
      mode: 'tunnel',
      cluster: 'edge',
      issuer: stack.issuer.url,
      dataDir: stack.dataDir,
      issuerCa: stack.caPem,
      tunnel: { hubUrl: stack.issuer.url, connectorKey: edgeKey, hubCa: stack.caPem },
      upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
      audit: { file: `${stack.dataDir}/edge-relay-audit.jsonl` },
      maxStreamDurationMs: 0,
      pollRevocations: false,
      log: createLogger('error'),
    });
    await until(async () => (await throughHub('edge', edgeToken)).status === 200, 15_000, 'the tunnel of edge to serve');
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await throughHub('edge', edgeToken)).status);
    expect(statuses).toEqual(Array(20).fill(200));
    for (const control of controlChannels) expect(opened(control)).toBe(0);
    expect(channel.ws.readyState).toBe(channel.ws.OPEN);
  });

  it('gets revocations pushed down it', async () => {
    const channel = await controlChannel();
    const { registry, close } = await stack.registry();
    await registry.createAgent('pushed-away', 'acme', ['sre']);
    await registry.revokeAgent('pushed-away');
    await close();
    const pushed = () =>
      channel.frames.some((f) => f.type === FrameType.Control && (JSON.parse(f.payload.toString()) as { items?: { user: string }[] }).items?.some((item) => item.user === 'agent:pushed-away'));
    await until(pushed, 15_000, 'the revocation down the control channel');
  });

  it('is refused with 400 when the channel is neither tunnel nor control', async () => {
    await expect(dialHub(stack, edgeKey, 'edge', { [CHANNEL_HEADER]: 'sideways' })).rejects.toMatchObject({ status: 400 });
  });
});
