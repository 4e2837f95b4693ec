package validate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one decoded document of a manifest stream.
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	// Value is a pointer to the typed object: *appsv1.Deployment,
	// *corev1.Service, *ServiceMonitor, ...
	Value any
}

func (o Object) String() string { return o.Kind + "/" + o.Name }

// kinds are the objects otpd's manifests may contain, by apiVersion and kind.
// Anything else is an error: a new kind is added here deliberately.
var kinds = map[string]func() any{
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return new(ServiceMonitor)
	},
}

// ServiceMonitor is the part of the Prometheus Operator's
// monitoring.coreos.com/v1 ServiceMonitor that otpd uses. It is decoded
// strictly like the rest: a field not modelled here is an error, so extend
// the struct when the manifest needs more.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		TargetLabels      []string             `json:"targetLabels,omitempty"`
		PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []ServiceMonitorEndpoint `json:"endpoints"`
	} `json:"spec"`
}

// ServiceMonitorEndpoint is one scrape endpoint of a ServiceMonitor.
type ServiceMonitorEndpoint struct {
	Port          string `json:"port,omitempty"`
	Path          string `json:"path,omitempty"`
	Scheme        string `json:"scheme,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
	HonorLabels   bool   `json:"honorLabels,omitempty"`
}

// Decode splits a multi-document YAML stream (kustomize build output) and
// decodes every document strictly into its Kubernetes type: an unknown or
// misspelt field, a duplicate key, a wrong type or an unknown kind is an
// error.
func Decode(stream []byte) ([]Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []Object
	var errs []error
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, err := decodeOne(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d (%s): %w", i, obj, err))
			continue
		}
		objs = append(objs, obj)
	}
	return objs, errors.Join(errs...)
}

func decodeOne(doc []byte) (Object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, err
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return Object{}, err
	}
	obj := Object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name}
	newValue, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return obj, fmt.Errorf("apiVersion %q kind %q is not a kind otpd's manifests use", head.APIVersion, head.Kind)
	}
	obj.Value = newValue()
	strict, err := sigsjson.UnmarshalStrict(js, obj.Value)
	if err != nil {
		return obj, err
	}
	if err := errors.Join(strict...); err != nil {
		return obj, err
	}
	if obj.Name == "" {
		return obj, errors.New("metadata.name is empty")
	}
	return obj, nil
}
