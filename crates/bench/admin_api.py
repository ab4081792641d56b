import http.client, json, sys, time, statistics
ops=sys.argv[1]
c=http.client.HTTPConnection("127.0.0.1",18080)
h={"Authorization":"Bearer "+ops,"Content-Type":"application/json"}
def call(m,p,b=None):
    t=time.perf_counter(); c.request(m,p,body=json.dumps(b) if b is not None else None,headers=h); r=c.getresponse(); r.read(); return r.status,(time.perf_counter()-t)*1000
res={}
for name,fn in [("create",lambda i: call("POST","/api/admin/v1/licenses",{"number":f"B-{i}","name":"x","max_devices":5})),
                ("patch",lambda i: call("PATCH",f"/api/admin/v1/licenses/B-{i}",{"max_devices":None})),
                ("suspend",lambda i: call("PATCH",f"/api/admin/v1/licenses/B-{i}",{"suspended":True})),
                ("audit page",lambda i: call("GET","/api/admin/v1/audit?size=100")),
                ("license list page",lambda i: call("GET","/api/admin/v1/licenses?size=100")),
                ("delete",lambda i: call("DELETE",f"/api/admin/v1/licenses/B-{i}",{"confirm":f"B-{i}"}))]:
    ms=[]
    for i in range(200):
        s,t=fn(i); assert s in (200,201,204),(name,s); ms.append(t)
    ms.sort(); res[name]=(statistics.median(ms), ms[int(len(ms)*0.99)-1], sum(ms)/1000)
for k,(p50,p99,tot) in res.items(): print(f"| {k} | {p50:.2f} | {p99:.2f} | {200/tot:.0f} |")
