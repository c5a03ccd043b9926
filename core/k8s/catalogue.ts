/**
 * What Kubernetes itself knows about its built-in resources and that the data alone cannot say:
 * where the API server stores each one (most at `/registry/<resource>/`, some at irregular
 * prefixes such as `services/specs/` or `minions/`), its short names, and the prefixes under
 * `/registry/` that hold no served resource (IP range allocations, master leases).
 *
 * Source: kubernetes/pkg/registry/*\/storage (`DefaultQualifiedResource` and `StorageConfig`
 * prefixes) and each resource's `ShortNames()`. Custom resources never appear here: they are
 * stored at `/registry/<group>/<resource>/` and described by their CustomResourceDefinition.
 */

/** One built-in resource as the catalogue knows it. */
export interface CatalogueEntry {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  /** Where it is stored, relative to the `/registry/` root, ending in `/`. */
  readonly path: string;
}

type Row = [
  group: string,
  version: string,
  resource: string,
  kind: string,
  scope: 'ns' | 'cluster',
  shortNames?: string[],
  path?: string,
];

const ROWS: Row[] = [
  ['', 'v1', 'configmaps', 'ConfigMap', 'ns', ['cm']],
  ['', 'v1', 'secrets', 'Secret', 'ns'],
  ['', 'v1', 'pods', 'Pod', 'ns', ['po']],
  ['', 'v1', 'services', 'Service', 'ns', ['svc'], 'services/specs/'],
  ['', 'v1', 'endpoints', 'Endpoints', 'ns', ['ep'], 'services/endpoints/'],
  ['', 'v1', 'namespaces', 'Namespace', 'cluster', ['ns']],
  ['', 'v1', 'nodes', 'Node', 'cluster', ['no'], 'minions/'],
  ['', 'v1', 'serviceaccounts', 'ServiceAccount', 'ns', ['sa']],
  ['', 'v1', 'persistentvolumes', 'PersistentVolume', 'cluster', ['pv']],
  ['', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', 'ns', ['pvc']],
  ['', 'v1', 'events', 'Event', 'ns', ['ev']],
  ['', 'v1', 'replicationcontrollers', 'ReplicationController', 'ns', ['rc'], 'controllers/'],
  ['', 'v1', 'limitranges', 'LimitRange', 'ns', ['limits']],
  ['', 'v1', 'resourcequotas', 'ResourceQuota', 'ns', ['quota']],
  ['', 'v1', 'podtemplates', 'PodTemplate', 'ns'],
  ['apps', 'v1', 'deployments', 'Deployment', 'ns', ['deploy']],
  ['apps', 'v1', 'replicasets', 'ReplicaSet', 'ns', ['rs']],
  ['apps', 'v1', 'statefulsets', 'StatefulSet', 'ns', ['sts']],
  ['apps', 'v1', 'daemonsets', 'DaemonSet', 'ns', ['ds']],
  ['apps', 'v1', 'controllerrevisions', 'ControllerRevision', 'ns'],
  ['batch', 'v1', 'jobs', 'Job', 'ns'],
  ['batch', 'v1', 'cronjobs', 'CronJob', 'ns', ['cj']],
  ['autoscaling', 'v2', 'horizontalpodautoscalers', 'HorizontalPodAutoscaler', 'ns', ['hpa']],
  ['policy', 'v1', 'poddisruptionbudgets', 'PodDisruptionBudget', 'ns', ['pdb']],
  ['networking.k8s.io', 'v1', 'ingresses', 'Ingress', 'ns', ['ing'], 'ingress/'],
  ['networking.k8s.io', 'v1', 'ingressclasses', 'IngressClass', 'cluster'],
  ['networking.k8s.io', 'v1', 'networkpolicies', 'NetworkPolicy', 'ns', ['netpol']],
  ['discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice', 'ns'],
  ['rbac.authorization.k8s.io', 'v1', 'roles', 'Role', 'ns'],
  ['rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding', 'ns'],
  ['rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', 'cluster'],
  ['rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', 'cluster'],
  ['storage.k8s.io', 'v1', 'storageclasses', 'StorageClass', 'cluster', ['sc']],
  ['storage.k8s.io', 'v1', 'csidrivers', 'CSIDriver', 'cluster'],
  ['storage.k8s.io', 'v1', 'csinodes', 'CSINode', 'cluster'],
  ['storage.k8s.io', 'v1', 'volumeattachments', 'VolumeAttachment', 'cluster'],
  ['coordination.k8s.io', 'v1', 'leases', 'Lease', 'ns'],
  ['scheduling.k8s.io', 'v1', 'priorityclasses', 'PriorityClass', 'cluster', ['pc']],
  ['node.k8s.io', 'v1', 'runtimeclasses', 'RuntimeClass', 'cluster'],
  [
    'certificates.k8s.io',
    'v1',
    'certificatesigningrequests',
    'CertificateSigningRequest',
    'cluster',
    ['csr'],
  ],
  [
    'admissionregistration.k8s.io',
    'v1',
    'validatingwebhookconfigurations',
    'ValidatingWebhookConfiguration',
    'cluster',
  ],
  [
    'admissionregistration.k8s.io',
    'v1',
    'mutatingwebhookconfigurations',
    'MutatingWebhookConfiguration',
    'cluster',
  ],
  ['flowcontrol.apiserver.k8s.io', 'v1', 'flowschemas', 'FlowSchema', 'cluster'],
  [
    'flowcontrol.apiserver.k8s.io',
    'v1',
    'prioritylevelconfigurations',
    'PriorityLevelConfiguration',
    'cluster',
  ],
  [
    'apiextensions.k8s.io',
    'v1',
    'customresourcedefinitions',
    'CustomResourceDefinition',
    'cluster',
    ['crd', 'crds'],
    'apiextensions.k8s.io/customresourcedefinitions/',
  ],
  [
    'apiregistration.k8s.io',
    'v1',
    'apiservices',
    'APIService',
    'cluster',
    [],
    'apiregistration.k8s.io/apiservices/',
  ],
];

export const CATALOGUE: readonly CatalogueEntry[] = ROWS.map(
  ([group, version, resource, kind, scope, shortNames = [], path = `${resource}/`]) =>
    Object.freeze({ group, version, resource, kind, namespaced: scope === 'ns', shortNames, path }),
);

/** Built-in resources by storage path relative to the root (`services/specs/`). */
export const CATALOGUE_BY_PATH: ReadonlyMap<string, CatalogueEntry> = new Map(
  CATALOGUE.map((e) => [e.path, e]),
);

/**
 * First path segments that group several stored resources under one more segment
 * (`services/specs/`, `services/endpoints/`): the resource's path has two segments.
 */
export const CONTAINER_SEGMENTS: ReadonlySet<string> = new Set(['services']);

/** First path segments under the root that hold no served resource. */
export const NOT_RESOURCES: ReadonlySet<string> = new Set(['ranges', 'masterleases', 'health']);

/** The catalogue entry for (group, resource), if it is a built-in. */
export function catalogueEntry(group: string, resource: string): CatalogueEntry | undefined {
  return CATALOGUE.find((e) => e.group === group && e.resource === resource);
}

/**
 * The field selectors Kubernetes supports beyond `metadata.name` and `metadata.namespace`, by
 * built-in resource (`group/resource`; each kind's selectable fields in kubernetes/pkg/registry).
 * `kubectl describe` lists an object's Events with `involvedObject.*`.
 */
export const FIELD_LABELS: ReadonlyMap<string, ReadonlySet<string>> = new Map(
  (
    [
      [
        '/events',
        [
          'involvedObject.kind',
          'involvedObject.namespace',
          'involvedObject.name',
          'involvedObject.uid',
          'involvedObject.apiVersion',
          'involvedObject.resourceVersion',
          'involvedObject.fieldPath',
          'reason',
          'reportingComponent',
          'source',
          'type',
        ],
      ],
      [
        '/pods',
        [
          'spec.nodeName',
          'spec.restartPolicy',
          'spec.schedulerName',
          'spec.serviceAccountName',
          'spec.hostNetwork',
          'status.phase',
          'status.podIP',
          'status.nominatedNodeName',
        ],
      ],
      ['/secrets', ['type']],
      ['/namespaces', ['status.phase']],
      ['/nodes', ['spec.unschedulable']],
      ['/replicationcontrollers', ['status.replicas']],
      ['apps/replicasets', ['status.replicas']],
      ['batch/jobs', ['status.successful']],
      ['certificates.k8s.io/certificatesigningrequests', ['spec.signerName']],
    ] as const
  ).map(([resource, fields]): [string, ReadonlySet<string>] => [resource, new Set<string>(fields)]),
);
