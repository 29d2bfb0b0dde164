// The XML of S3 / IAM / STS responses (aws/xml.h): the parser, the error-body reader shared by
// every client, and the ListObjectsV2 page reader; the tree is walked as the IAM client does.
#include <string>

#include "kiln/aws/client.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/xml.h"
#include "fuzz.h"

KILN_FUZZ(input) {
  kiln::aws::HttpResponse r;
  r.status = 400;
  r.body = std::string(input);
  kiln::aws::parse_error_body(r);
  kiln::aws::XmlNode x = kiln::aws::parse_xml(input, "IAM response");
  if (const kiln::aws::XmlNode* role = x.find("Role")) (void)role->child_text("Arn");
  if (const kiln::aws::XmlNode* list = x.find("AttachedPolicies"))
    for (const kiln::aws::XmlNode* m : list->all("member")) (void)m->child_text("PolicyArn");
  kiln::aws::parse_list_objects_v2(input);
}
