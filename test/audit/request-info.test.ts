/** Cases from kube-apiserver's requestinfo_test.go: our audit must name requests as the cluster's audit does. */
import { describe, expect, it } from 'vitest';
import { auditVerb } from '../../src/audit/record.js';
import { parseRequestInfo } from '../../src/audit/request-info.js';

describe('resource requests', () => {
  it.each([
    // method, url, verb, prefix, group, version, namespace, resource, subresource, name, parts
    ['GET', '/api/v1/namespaces', 'list', 'api', '', 'v1', '', 'namespaces', '', '', ['namespaces']],
    ['GET', '/api/v1/namespaces/other', 'get', 'api', '', 'v1', 'other', 'namespaces', '', 'other', ['namespaces', 'other']],
    ['GET', '/api/v1/namespaces/other/pods', 'list', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/namespaces/other/pods/foo', 'get', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods', 'foo']],
    ['HEAD', '/api/v1/namespaces/other/pods/foo', 'get', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods', 'foo']],
    ['GET', '/api/v1/pods', 'list', 'api', '', 'v1', '', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/proxy/namespaces/other/pods/foo', 'proxy', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods', 'foo']],
    ['GET', '/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource', 'proxy', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods', 'foo', 'subpath', 'not', 'a', 'subresource']],
    ['GET', '/api/v1/watch/pods', 'watch', 'api', '', 'v1', '', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/pods?watch=true', 'watch', 'api', '', 'v1', '', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/pods?watch=false', 'list', 'api', '', 'v1', '', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/watch/namespaces/other/pods', 'watch', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/namespaces/other/pods?watch=1', 'watch', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/namespaces/other/pods?watch=0', 'list', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
    ['GET', '/api/v1/namespaces/other/pods/foo/status', 'get', 'api', '', 'v1', 'other', 'pods', 'status', 'foo', ['pods', 'foo', 'status']],
    ['GET', '/api/v1/namespaces/other/pods/foo/proxy/subpath', 'get', 'api', '', 'v1', 'other', 'pods', 'proxy', 'foo', ['pods', 'foo', 'proxy', 'subpath']],
    ['PUT', '/api/v1/namespaces/other/finalize', 'update', 'api', '', 'v1', 'other', 'namespaces', 'finalize', 'other', ['namespaces', 'other', 'finalize']],
    ['PUT', '/api/v1/namespaces/other/status', 'update', 'api', '', 'v1', 'other', 'namespaces', 'status', 'other', ['namespaces', 'other', 'status']],
    ['PATCH', '/api/v1/namespaces/other/pods/foo', 'patch', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods', 'foo']],
    ['DELETE', '/api/v1/namespaces/other/pods/foo', 'delete', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods', 'foo']],
    ['POST', '/api/v1/namespaces/other/pods', 'create', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
    ['DELETE', '/api/v1/nodes', 'deletecollection', 'api', '', 'v1', '', 'nodes', '', '', ['nodes']],
    ['DELETE', '/api/v1/namespaces', 'deletecollection', 'api', '', 'v1', '', 'namespaces', '', '', ['namespaces']],
    ['DELETE', '/api/v1/namespaces/other/pods', 'deletecollection', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
    ['DELETE', '/apis/extensions/v1/namespaces/other/pods', 'deletecollection', 'apis', 'extensions', 'v1', 'other', 'pods', '', '', ['pods']],
    ['POST', '/apis/extensions/v1/namespaces/other/pods', 'create', 'apis', 'extensions', 'v1', 'other', 'pods', '', '', ['pods']],
    ['POST', '/apis/extensions/v1beta3/namespaces/other/pods', 'create', 'apis', 'extensions', 'v1beta3', 'other', 'pods', '', '', ['pods']],
    ['GET', '/apis/apps/v1/namespaces/team-a/deployments/web/scale', 'get', 'apis', 'apps', 'v1', 'team-a', 'deployments', 'scale', 'web', ['deployments', 'web', 'scale']],
    ['POST', '/api/v1/namespaces/default/pods/web/exec?command=ls', 'create', 'api', '', 'v1', 'default', 'pods', 'exec', 'web', ['pods', 'web', 'exec']],
    ['GET', '/api/v1/namespaces/default/pods/web/log?follow=true', 'get', 'api', '', 'v1', 'default', 'pods', 'log', 'web', ['pods', 'web', 'log']],
    ['GET', '/api/v1/namespaces/other/pods?fieldSelector=metadata.name%3Dfoo', 'list', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods']],
    ['GET', '/api/v1/namespaces/other/pods?fieldSelector=metadata.name%3D%3Dfoo&watch=true', 'watch', 'api', '', 'v1', 'other', 'pods', '', 'foo', ['pods']],
    ['GET', '/api/v1/namespaces/other/pods?fieldSelector=metadata.name%21%3Dfoo', 'list', 'api', '', 'v1', 'other', 'pods', '', '', ['pods']],
  ])('%s %s is %s', (method, url, verb, apiPrefix, apiGroup, apiVersion, namespace, resource, subresource, name, parts) => {
    expect(parseRequestInfo(method as string, url as string)).toEqual({
      isResourceRequest: true,
      path: (url as string).split('?')[0],
      verb,
      apiPrefix,
      apiGroup,
      apiVersion,
      namespace,
      resource,
      subresource,
      name,
      parts,
    });
  });
});

describe('non-resource requests', () => {
  it.each([
    ['GET', '/api'],
    ['GET', '/api/v1'],
    ['GET', '/apis'],
    ['GET', '/apis/extensions'],
    ['GET', '/apis/extensions/v1'],
    ['GET', '/healthz'],
    ['GET', '/version'],
    ['GET', '/openapi/v2'],
    ['POST', '/some/other/path'],
    ['GET', '/'],
  ])('%s %s uses the lower-cased method as its verb', (method, url) => {
    const info = parseRequestInfo(method, url);
    expect(info.isResourceRequest).toBe(false);
    expect(info.verb).toBe(method.toLowerCase());
    expect(info.resource).toBe('');
  });
});

describe('audit verbs for streaming subresources (DESIGN §5)', () => {
  it.each([
    ['create', 'exec', 'exec'],
    ['get', 'exec', 'exec'],
    ['create', 'attach', 'attach'],
    ['create', 'portforward', 'portforward'],
    ['get', 'proxy', 'proxy'],
    ['get', 'log', 'get'],
    ['list', '', 'list'],
  ])('%s on %s is audited as %s', (verb, subresource, expected) => {
    expect(auditVerb(verb, subresource)).toBe(expected);
  });
});
